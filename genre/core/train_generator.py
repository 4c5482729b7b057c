"""Train GenRe's generator on synthesised pairs: Adam, a validation loss every epoch, the best epoch kept,
early stopping, a progress bar with the loss; seeded, so the same inputs give the same weights.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genre.core.classifier import Classifier, one_thread
from genre.core.encoding import MinMaxEncoder
from genre.core.generator import Generator, GeneratorConfig
from genre.core.pairs import PairConfig, PairSampler, split_sources_targets
from genre.core.progress import Progress, epochs
from genre.core.sampler import GenRe, observed_support

log = logging.getLogger(__name__)
# `PairSampler.hub_share` above this is logged as a warning: a tenth of the sources learn one destination.
HUB_WARNING = 0.1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 256  # small batches: many Adam steps per CPU second matter more than GPU-style throughput
    lr: float = 2e-3  # pre-norm blocks tolerate it; the paper's 1e-4 needs ~2000 epochs
    lr_final: float = 0.05  # cosine decay to this fraction of lr over `epochs`
    warmup_steps: int = 100
    patience: int = 10  # epochs without a better validation loss before stopping
    val_frac: float = 0.1  # share of sources held out for the validation loss
    val_draws: int = 2  # fixed targets drawn per validation source, so the validation loss is not noisy
    seed: int = 0
    pairs: PairConfig = field(default_factory=PairConfig)


# The search's starting point and the default for a data set without a tuned recipe file: width 32 like the
# paper, but 1 encoder + 2 decoder layers instead of 16 + 16, pre-norm, lr 2e-3 with cosine decay.
SMALL = dict(emb=32, ff=64, heads=4, enc_layers=1, dec_layers=2, value_hidden=32)
RECIPE_DIR = Path(__file__).with_name("recipes")


@dataclass(frozen=True)
class Sampling:
    """How recourse is drawn from a trained generator: k samples at `temperature`, then the `select` rule
    (`margin` is the second opinion's threshold for the robust rules; `sparsify` undoes unneeded changes while
    h and the second opinion stay above it, see `GenRe.sparsify`; `keep_own` is `Decoding.keep_own`: a draw of
    the factual's own bin keeps its exact value)."""

    select: str = "max_prob"
    temperature: float = 0.1
    k: int = 10
    margin: float = 0.6
    sparsify: bool = False
    guard: bool = False  # sparsify only where LOF on h's favourable training rows still calls the row an inlier
    keep_own: bool = True


@dataclass(frozen=True)
class Recipe:
    """A data set's generator, training and sampling settings; `source` says where they came from."""

    generator: GeneratorConfig
    train: TrainConfig
    paper: Sampling  # the paper's max_prob rule with its chosen temperature and k
    best: Sampling  # the rule, temperature, k and margin `genre tune` chose
    source: str
    # The best rule's own generator, when `genre tune` chose a different one for it than for the paper's rule
    # (the robust rules' second opinion can keep cheaper pairs valid); None: both rules share `generator`.
    best_generator: GeneratorConfig | None = None
    best_train: TrainConfig | None = None

    def for_rule(self, which: str) -> tuple[GeneratorConfig, TrainConfig]:
        """The (generator, training) configs behind the "paper" or the "best" rule."""
        if which == "best" and self.best_generator is not None:
            return self.best_generator, self.best_train or self.train
        return self.generator, self.train


def train_config_from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    pairs = PairConfig(**data.pop("pairs", {}))
    return TrainConfig(**data, pairs=pairs)


# The sized default's budget: optimiser steps times features (a step's cost grows with the number of features,
# the generator's sequence length). The tuned built-in recipes sit near it and train within issue 10's budgets
# (heloc: 80 epochs of ~28 steps x 21 features; adult: 40 epochs of ~66 steps x 13 features).
STEP_FEATURE_BUDGET = 40_000
DEFAULT_EPOCHS = (10, 80)  # fewest and most epochs of the sized default


def sized_train_config(rows: int, d: int) -> TrainConfig:
    """Untuned training settings sized to a data set: a batch that grows with the rows, and epochs chosen so
    the optimiser steps (at most every row a source) stay within `STEP_FEATURE_BUDGET / d`."""
    batch = 128 if rows <= 10_000 else 256 if rows <= 50_000 else 512
    steps_per_epoch = max(1, math.ceil(0.9 * rows / batch))
    epochs = int(min(DEFAULT_EPOCHS[1], max(DEFAULT_EPOCHS[0], STEP_FEATURE_BUDGET // max(d, 1) // steps_per_epoch)))
    return TrainConfig(epochs=epochs, batch_size=batch, patience=max(5, epochs // 8))


def load_recipe(dataset: str, d: int, directory: Path | None = None, rows: int | None = None) -> Recipe:
    """The recipe `genre tune` wrote for `dataset` (genre/core/recipes/<dataset>.json), or the untuned default: the
    small generator, with epochs and batch size sized to `rows` training rows when given (`sized_train_config`).
    `source` says which, and why."""
    path = (directory or RECIPE_DIR) / f"{dataset}.json"
    if not path.exists():
        hint = (f"no tuned recipe at {path}; `genre tune --dataset {dataset}` (a data set of your own: "
                f"`--dataset <its spec file>`) writes one")
        if rows is None:
            return Recipe(GeneratorConfig(d=d, **SMALL), TrainConfig(), Sampling(), Sampling(),
                          source=f"default ({hint})")
        train = sized_train_config(rows, d)
        return Recipe(GeneratorConfig(d=d, **SMALL), train, Sampling(), Sampling(),
                      source=f"default sized to the data ({rows} rows, {d} features: small generator emb "
                             f"{SMALL['emb']} {SMALL['enc_layers']}+{SMALL['dec_layers']} layers, {train.epochs} "
                             f"epochs of batch {train.batch_size}, patience {train.patience}; {hint})")
    try:
        data = json.loads(path.read_text())
        own = data.get("best_generator")
        return Recipe(
            generator=GeneratorConfig(d=d, **data["generator"]),
            train=train_config_from_dict(data["train"]),
            paper=Sampling(**data["sampling"]["paper"]),
            best=Sampling(**data["sampling"]["best"]),
            source=f"{path.name}: {data.get('chosen_by', 'genre tune')}",
            best_generator=GeneratorConfig(d=d, **own["generator"]) if own else None,
            best_train=train_config_from_dict(own["train"]) if own else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"recipe file {path} is not a valid recipe: {exc}") from exc


def recipe(dataset: str, d: int, rows: int | None = None) -> tuple[GeneratorConfig, TrainConfig]:
    """The chosen (generator, training) configs for a data set (see `load_recipe`)."""
    r = load_recipe(dataset, d, rows=rows)
    return r.generator, r.train


@dataclass(frozen=True)
class Pairs:
    """What the generator learns from: sources split into train/validation, the targets, and Q for each split
    (`train_q.index_` indexes `targets`; sources without a target in their immutable group are not kept)."""

    train_sources: np.ndarray
    val_sources: np.ndarray
    targets: np.ndarray
    train_q: PairSampler
    val_q: PairSampler


def make_pairs(X: np.ndarray, y: np.ndarray, h_proba: np.ndarray, immutable: np.ndarray, config: TrainConfig) -> Pairs:
    """Split sources into train/validation and build Q for each against all targets."""
    src_idx, tgt_idx = split_sources_targets(X, y, h_proba, config.pairs.gamma, config.pairs.target_lof)
    if len(src_idx) < 2:
        raise ValueError(f"only {len(src_idx)} sources with h(x) <= {config.pairs.gamma}: nothing to learn")
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(src_idx)
    n_val = max(1, int(round(config.val_frac * len(perm))))
    val_src, train_src = perm[:n_val], perm[n_val:]
    targets = X[tgt_idx]
    return Pairs(X[train_src], X[val_src], targets, PairSampler(X[train_src], targets, immutable, config.pairs),
                 PairSampler(X[val_src], targets, immutable, config.pairs))


def train_generator(
    X: np.ndarray,
    y: np.ndarray,
    *,
    encoder: MinMaxEncoder,
    classifier: Classifier,
    config: GeneratorConfig | None = None,
    train: TrainConfig | None = None,
    progress: Progress = True,
) -> GenRe:
    """Train a generator on the training set and return a ready `GenRe`.

    Parameters
    ----------
    X : (n, d) encoded training rows (`encoder.transform`).
    y : (n,) their labels (the labels h was trained on).
    encoder, classifier : the fitted encoder and the classifier h under recourse.
    config, train : model and training configs; default to `recipe(spec.name, d)`.

    The returned object's `history` holds per-epoch train/validation losses, the best epoch, the number
    of pairs and the training time in seconds.
    """
    # Small matmuls: one thread beats two fighting over the shared cores (as for h).
    with one_thread():
        return _train(np.asarray(X, dtype=np.float32), np.asarray(y), encoder, classifier, config, train, progress)


def _train(X, y, encoder, classifier, config, train, progress) -> GenRe:
    spec = encoder.spec
    default_cfg, default_train = recipe(spec.name, spec.d, rows=len(X))
    config = config or default_cfg
    train = train or default_train
    if config.d != X.shape[1]:
        raise ValueError(f"config.d={config.d} but X has {X.shape[1]} features")
    start = time.perf_counter()
    h_proba = classifier.predict_proba(X)
    pairs = make_pairs(X, y, h_proba, spec.mask("immutable"), train)
    tr_q, va_q = pairs.train_q, pairs.val_q
    targets = torch.as_tensor(pairs.targets)
    tr_src_t = torch.as_tensor(pairs.train_sources[tr_q.kept_])
    va_src_t = torch.as_tensor(pairs.val_sources[va_q.kept_])

    gen = torch.Generator().manual_seed(train.seed)
    # Fixed validation pairs: the same draws every epoch, so epochs are compared on equal terms.
    va_x = va_src_t.repeat(train.val_draws, 1)
    va_t = torch.cat([targets[va_q.sample(gen)] for _ in range(train.val_draws)])

    model = Generator(config)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    steps_per_epoch = math.ceil(len(tr_src_t) / train.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(train, steps_per_epoch * train.epochs))
    history: dict = {"train_loss": [], "val_loss": [], "best_epoch": -1, "n_train_sources": len(tr_src_t),
                     "n_val_sources": len(va_src_t), "n_targets": len(targets), "hub_share": tr_q.hub_share()}
    if history["hub_share"] > HUB_WARNING:
        hint = " PairConfig(target_lof=20) drops isolated targets." if not train.pairs.target_lof else ""
        log.warning("%s: one pair target takes %.0f %% of the sources (Q puts more than half its mass there); the "
                    "generator will send them all to it.%s", spec.name, 100 * history["hub_share"], hint)
    best_loss, best_state, stale = float("inf"), None, 0
    bar = epochs(train.epochs, f"generator {spec.name}", progress)
    for epoch in bar:
        model.train()
        pair_targets = targets[tr_q.sample(gen)]  # one fresh target per source
        perm = torch.randperm(len(tr_src_t), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * train.batch_size : (s + 1) * train.batch_size]
            _, loss = model(tr_src_t[idx], pair_targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history["train_loss"].append(total / len(tr_src_t))
        history["val_loss"].append(_evaluate(model, va_x, va_t))
        if history["val_loss"][-1] < best_loss:
            best_loss, best_state, stale = history["val_loss"][-1], copy.deepcopy(model.state_dict()), 0
            history["best_epoch"] = epoch
        else:
            stale += 1
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", val=f"{history['val_loss'][-1]:.3f}",
                        best=f"{best_loss:.3f}")
        if stale >= train.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    history["train_seconds"] = time.perf_counter() - start
    return GenRe(model.eval(), encoder, classifier, support=observed_support(X, encoder, config.n_bins),
                 history=history)


@torch.no_grad()
def _evaluate(model: Generator, x: torch.Tensor, x_target: torch.Tensor, batch: int = 4096) -> float:
    model.eval()
    total = sum(float(model(x[s : s + batch], x_target[s : s + batch])[1]) * len(x[s : s + batch])
                for s in range(0, len(x), batch))
    return total / max(len(x), 1)


def _cosine(train: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine decay from 1 to `lr_final` (as a multiplier of lr)."""

    def factor(step: int) -> float:
        if step < train.warmup_steps:
            return (step + 1) / train.warmup_steps
        progress = min(1.0, (step - train.warmup_steps) / max(1, total_steps - train.warmup_steps))
        return train.lr_final + (1 - train.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
