"""The two figures every retrain run logs: loss curves, and recourse cost against validity."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: flows run in workers without a display
import matplotlib.pyplot as plt
import numpy as np


def loss_curves(classifier_loss: list[float], generator: dict | None):
    fig, axes = plt.subplots(1, 2 if generator else 1, figsize=(9 if generator else 4.5, 3.2), squeeze=False)
    axes = axes[0]
    axes[0].plot(np.arange(1, len(classifier_loss) + 1), classifier_loss)
    axes[0].set(title="classifier h: weighted BCE", xlabel="epoch", ylabel="loss")
    if generator:
        axes[1].plot(np.arange(1, len(generator["train_loss"]) + 1), generator["train_loss"], label="train")
        axes[1].plot(np.arange(1, len(generator["val_loss"]) + 1), generator["val_loss"], label="validation")
        axes[1].set(title="generator: soft-binned CE", xlabel="epoch")
        axes[1].legend()
    fig.tight_layout()
    return fig


def cost_validity(cost: np.ndarray, h: np.ndarray, oracle: np.ndarray):
    """Each recourse: its cost against h(x+), coloured by the oracle's verdict."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    valid = oracle > 0.5
    ax.scatter(cost[valid], h[valid], s=10, alpha=0.6, label=f"oracle-valid ({valid.mean():.0%})" if len(valid) else "valid")
    ax.scatter(cost[~valid], h[~valid], s=10, alpha=0.8, marker="x", label="oracle-invalid")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="cost (L1, encoded)", ylabel="h(recourse)", title="recourse cost vs validity")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
