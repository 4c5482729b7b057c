"""The classifier h under recourse (the paper's small MLP) and the evaluation oracle that judges validity.

Both take the encoded [0, 1] feature matrix (see `genre.core.encoding`) and return P(y = 1 | x).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from genre.core import files


def rejects(scores) -> np.ndarray:
    """(n,) bool: the rows h rejects, h(x) <= 0.5, those recourse is for (a recourse is valid when h(x+) > 0.5)."""
    return np.asarray(scores) <= 0.5


def rejected_indices(scores) -> np.ndarray:
    """Indices of the rows h rejects (`rejects`), in order."""
    return np.flatnonzero(rejects(scores))


@contextmanager
def one_thread():
    """Run torch on one thread, then restore the caller's setting.

    The paper's models are tiny (batch 64, width 10): thread hand-offs cost more than they save, and on a
    shared 2-core machine two threads measured 6x slower per epoch (0.8 s vs 5.3 s on compas).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class ClassifierConfig:
    d: int
    hidden: tuple[int, ...] = (10, 10, 10)  # the paper's d -> 10 -> 10 -> 10 -> 1
    lr: float = 1e-3
    epochs: int = 100
    batch_size: int = 64
    balanced: bool = True  # class-balanced BCE weights (the authors' "cali" h: compute_sample_weight("balanced"))
    shuffle: bool = True  # reshuffle the rows every epoch; the authors' DataLoader keeps the file's order
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))


class MLP(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = config.d
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B,) logits


class Classifier:
    """h(x) = P(y = 1 | x): an MLP trained with BCE and Adam, seeded, saved as config plus state dict."""

    def __init__(self, config: ClassifierConfig):
        self.config = config
        self.module = MLP(config)
        self.history_: list[float] = []

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: bool = False,
            sample_weight: np.ndarray | None = None) -> "Classifier":
        """`sample_weight` (n,) multiplies each row's loss (on top of the class balance); None: all 1."""
        with one_thread():
            return self._fit(X, y, progress, sample_weight)

    def _fit(self, X: np.ndarray, y: np.ndarray, progress: bool, sample_weight: np.ndarray | None = None) -> "Classifier":
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.module = MLP(cfg)
        X_t = torch.as_tensor(np.asarray(X, dtype=np.float32))
        y_t = torch.as_tensor(np.asarray(y, dtype=np.float32))
        w_t = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight, dtype=np.float32))
        pos = float(y_t.mean()) if w_t is None else float((w_t * y_t).sum() / w_t.sum())
        if cfg.balanced and 0.0 < pos < 1.0:
            # Weight each class by n / (2 n_c) so both classes contribute equally to the loss.
            w_pos, w_neg = 0.5 / pos, 0.5 / (1.0 - pos)
        else:
            w_pos = w_neg = 1.0
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr)
        n = len(X_t)
        steps = math.ceil(n / cfg.batch_size)
        self.module.train()
        self.history_ = []
        bar = tqdm(range(cfg.epochs), desc="classifier h", disable=not progress, leave=False)
        for _ in bar:
            perm = torch.randperm(n, generator=gen) if cfg.shuffle else torch.arange(n)
            total = 0.0
            for s in range(steps):
                idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                xb, yb = X_t[idx], y_t[idx]
                weight = torch.where(yb > 0.5, w_pos, w_neg)
                if w_t is not None:
                    weight = weight * w_t[idx]
                loss = nn.functional.binary_cross_entropy_with_logits(self.module(xb), yb, weight=weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.history_.append(total / n)
            bar.set_postfix(loss=f"{self.history_[-1]:.4f}")
        self.module.eval()
        return self

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n,) float64 P(y = 1 | x) for encoded rows."""
        self.module.eval()
        X_t = torch.as_tensor(np.asarray(X, dtype=np.float32))
        return torch.sigmoid(self.module(X_t)).double().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) > 0.5).astype(np.int64)

    def save(self, path: str | Path) -> None:
        with files.atomic_path(path) as tmp:  # never leave half a checkpoint under the real name
            torch.save({"config": asdict(self.config), "state_dict": self.module.state_dict()}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "Classifier":
        ckpt = torch.load(path, weights_only=True)
        clf = cls(ClassifierConfig(**ckpt["config"]))
        clf.module.load_state_dict(ckpt["state_dict"])
        clf.module.eval()
        return clf


@dataclass(frozen=True)
class OracleConfig:
    """The judge, built as the authors' `scripts/train_rf.py` builds it (scikit-learn defaults throughout).

    `balanced` passes class-balanced sample weights through the calibrated fit, so the isotonic maps are fit
    on a balanced population and P(y = 1 | x) = 0.5 sits where both classes are equally likely *per class*.
    Without it the forest may be balanced but calibration pulls the probabilities back to the class prior
    (compas: 88 % of test rows favourable instead of 65 %), and the judge calls almost any move valid.
    """

    n_estimators: int = 100  # RandomForestClassifier's default, as the authors use it
    min_samples_leaf: int = 1
    cv: int = 5  # CalibratedClassifierCV's default folds
    balanced: bool = True
    seed: int = 0


class Oracle:
    """The paper's judge of validity: an isotonic-calibrated random forest fit with class-balanced sample
    weights (see `OracleConfig`). `predict_proba(X) > 0.5` is the paper's validity test."""

    def __init__(self, config: OracleConfig = OracleConfig()):
        self.config = config

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Oracle":
        cfg = self.config
        y = np.asarray(y)
        forest = RandomForestClassifier(n_estimators=cfg.n_estimators, min_samples_leaf=cfg.min_samples_leaf,
                                        random_state=cfg.seed, n_jobs=-1)
        weights = compute_sample_weight("balanced", y) if cfg.balanced else None
        self.model_ = CalibratedClassifierCV(forest, method="isotonic", cv=cfg.cv).fit(
            np.asarray(X, dtype=np.float32), y, sample_weight=weights)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(np.asarray(X, dtype=np.float32))[:, 1]

    def favourable(self, X: np.ndarray) -> np.ndarray:
        """(n,) bool: the judge's verdict P(y = 1 | x) > 0.5 (validity; the rows the plausibility LOF is fit on)."""
        return self.predict_proba(X) > 0.5


class SecondOpinion:
    """A second classifier of another family than h, fit on h's own training rows and labels.

    Gradient-boosted trees (scikit-learn's histogram GBDT): where h, a smooth MLP, draws its boundary in the
    wrong place, a model with a different inductive bias, trained on the same data, often disagrees. GenRe's
    robust selection rules prefer, among the samples h accepts, those this model backs too (`genre.core.sampler`).
    It sees nothing h did not see: no oracle, no test rows.
    """

    def __init__(self, max_iter: int = 200, learning_rate: float = 0.05, seed: int = 0):
        self.params = dict(max_iter=max_iter, learning_rate=learning_rate, random_state=seed)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SecondOpinion":
        y = (np.asarray(y) == 1).astype(np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("the second opinion needs both labels among the training rows")
        # One OpenMP thread: on a shared 2-core machine the default pool spin-waits against the other jobs
        # (a 0.3 s fit was measured taking 116 s under load), and these trees are small.
        with threadpool_limits(1):
            self.model_ = HistGradientBoostingClassifier(**self.params).fit(np.asarray(X, dtype=np.float32), y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n,) P(y = 1 | x) for encoded rows."""
        if not hasattr(self, "model_"):
            raise RuntimeError("SecondOpinion is not fitted: call fit(X_train, y_train) first")
        with threadpool_limits(1):
            return self.model_.predict_proba(np.asarray(X, dtype=np.float32))[:, 1]


def oracle_labels(oracle: Oracle, X: np.ndarray, seed: int) -> np.ndarray:
    """y ~ Bernoulli(P_oracle(y = 1 | x)): the paper's labels for h, so the oracle is the true P(y | x)."""
    rng = np.random.default_rng(seed)
    return (rng.random(len(X)) < oracle.predict_proba(X)).astype(np.int64)
