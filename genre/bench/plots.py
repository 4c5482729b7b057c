"""PNG plots and the JSON file of the peers benchmark (matplotlib on the Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from genre.core import files  # noqa: E402

COLORS = {"genre": "#d62728", "genre-mincost": "#ff7f0e", "genre-robust-mincost": "#e377c2", "nnr": "#2ca02c", "wachter": "#1f77b4",
          "dice-random": "#9467bd", "dice-genetic": "#8c564b"}


def write_json(data: dict, path: Path) -> Path:
    """Atomic write; NaN and infinities become null so strict JSON parsers read the file."""
    return files.write_json(path, _clean(data), indent=2)


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_cost_validity(reports: list[dict], path: Path) -> Path:
    """Per data set: cost (x) against oracle validity (y), marker area proportional to plausibility."""
    fig, axes = plt.subplots(1, len(reports), figsize=(5.2 * len(reports), 4.2), squeeze=False)
    for ax, rep in zip(axes[0], reports):
        for row in rep["results"]:
            if not np.isfinite(row.get("cost", np.nan)):
                continue
            plaus = row["plausibility"]
            # A legend rather than annotations: on compas several methods sit at validity 1.0 together.
            ax.scatter(row["cost"], row["validity"], s=40 + 600 * plaus, alpha=0.6,
                       color=COLORS.get(row["method"], "grey"), edgecolor="black", linewidth=0.5,
                       label=f"{row['method']} (plaus. {plaus:.2f})")
        ax.set_title(f"{rep['dataset']}: n = {rep['n']} factuals")
        ax.set_xlabel("cost (L1 in min-max space, lower is better)")
        ax.set_ylabel("validity (oracle)")
        ax.set_ylim(-0.05, 1.1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", markerscale=0.4)
    fig.suptitle("Cost against validity; marker size = plausibility")
    return _save(fig, path)


def plot_throughput(reports: list[dict], path: Path) -> Path:
    """Recourses per second per method and data set, log scale."""
    methods = list(dict.fromkeys(r["method"] for rep in reports for r in rep["results"]))
    width = 0.8 / max(len(reports), 1)
    fig, ax = plt.subplots(figsize=(1.3 * len(methods) + 2, 4))
    x = np.arange(len(methods))
    for i, rep in enumerate(reports):
        by = {r["method"]: r["recourses_per_second"] for r in rep["results"]}
        vals = [by.get(m, np.nan) for m in methods]
        bars = ax.bar(x + (i - (len(reports) - 1) / 2) * width, vals, width, label=rep["dataset"])
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(f"{v:,.0f}" if v >= 10 else f"{v:.2g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(x, methods)
    ax.set_ylabel("recourses per second (batch, log scale)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_title("Throughput on the same factuals")
    return _save(fig, path)


def plot_scaling(points: list[dict], x_key: str, y_key: str, growth: dict, path: Path, *,
                 xlabel: str, ylabel: str, title: str) -> Path:
    """Log-log curve with a slope-1 reference through the last point."""
    x = np.array([p[x_key] for p in points], dtype=float)
    y = np.array([p[y_key] for p in points], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    since = f" from {growth['fit_from']:,} on" if growth.get("fit_from") else ""
    ax.loglog(x, y, "o-", label=f"measured (log-log slope {growth['slope_tail']:.2f}{since}: {growth['verdict']})")
    ax.loglog(x, y[-1] * x / x[-1], "--", color="grey", label="linear (slope 1)")
    ax.set_xticks(x, [f"{int(v):,}" for v in x])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # only the measured sizes, no crowded minors
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def write_plots(result: dict, out_dir: Path) -> list[Path]:
    """Every PNG the bench has data for, under `out_dir`."""
    out_dir = Path(out_dir)
    reports = list(result.get("datasets", {}).values())
    paths = []
    if reports:
        paths.append(plot_cost_validity(reports, out_dir / "cost_validity.png"))
        paths.append(plot_throughput(reports, out_dir / "throughput.png"))
    scaling = result.get("scaling", {})
    if "sampling" in scaling:
        s = scaling["sampling"]
        paths.append(plot_scaling(s["points"], "factuals", "seconds", s["growth"], out_dir / "scaling_sampling.png",
                                  xlabel="factuals in the batch", ylabel="seconds (k = 10)",
                                  title=f"GenRe sampling time ({s.get('dataset', '')})"))
    if "training" in scaling:
        t = scaling["training"]
        paths.append(plot_scaling(t["points"], "rows", "seconds_per_epoch", t["growth"],
                                  out_dir / "scaling_training.png", xlabel="training rows",
                                  ylabel="seconds per epoch", title=f"Generator training ({t['dataset']})"))
    return paths
