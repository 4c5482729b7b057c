"""Two search baselines, batched over many factuals: nearest-neighbour recourse and Wachter's gradient search.

Both take encoded factuals (n, d) and a `genre.evaluation.protocol.ProtocolSetup`, and return encoded recourses (n, d).
Immutable features never change; categorical features always hold one of their categories.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genre.core.classifier import one_thread
from genre.core.encoding import MinMaxEncoder

# Distances of one chunk of factuals to all candidates: chunk * n_candidates floats at most (~64 MB).
_MAX_CELLS = 16_000_000


def nearest_neighbour_recourse(
    factuals: np.ndarray, setup, *, threshold: float = 0.7, candidates: np.ndarray | None = None
) -> np.ndarray:
    """For each factual, the training point nearest in cost that h accepts with P > `threshold` and that
    shares the factual's immutable feature values. A factual with no such point is returned unchanged
    (so it counts as invalid rather than silently breaking an immutable feature)."""
    factuals = np.asarray(factuals, dtype=np.float32)
    pool = setup.X_train if candidates is None else np.asarray(candidates, dtype=np.float32)
    # Chosen by h's verdict, not by labels: the paper's label-based neighbours are often the factual itself.
    pool = pool[setup.classifier.predict_proba(pool) > threshold]
    out = factuals.copy()
    immutable = setup.spec.mask("immutable")
    # Number the immutable groups once over factuals and pool together: numbered separately, a batch that
    # lacks some group would shift the numbers and pair factuals with another group's candidates.
    keys = _row_keys(np.vstack([factuals[:, immutable], pool[:, immutable]]))
    f_keys, p_keys = keys[: len(factuals)], keys[len(factuals) :]
    for key in np.unique(f_keys):
        rows = np.flatnonzero(f_keys == key)
        group = torch.from_numpy(pool[p_keys == key])
        if len(group) == 0:
            continue
        chunk = max(1, _MAX_CELLS // len(group))
        for start in range(0, len(rows), chunk):
            idx = rows[start : start + chunk]
            dist = torch.cdist(torch.from_numpy(factuals[idx]), group, p=1)  # (chunk, n_group)
            out[idx] = group[dist.argmin(dim=1)].numpy()
    return out


def _row_keys(values: np.ndarray) -> np.ndarray:
    """One integer per distinct row of (n, k) values (k may be 0: then every row shares one key)."""
    if values.shape[1] == 0:
        return np.zeros(len(values), dtype=np.int64)
    rounded = np.round(values.astype(np.float64), 4)
    _, inverse = np.unique(rounded, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class WachterConfig:
    lam: float = 0.05  # weight of the L1 cost against BCE(h(x'), 1)
    lr: float = 0.01
    max_steps: int = 500
    seed: int = 0


def wachter_recourse(factuals: np.ndarray, setup, config: WachterConfig = WachterConfig()) -> np.ndarray:
    """Minimise BCE(h(x'), 1) + lam * |x' - x|_1 over mutable features with Adam, all rows at once.

    A row freezes at the first step where its projected point (clamped, categoricals snapped to a code)
    is valid under h, so validity is judged after projection, not before. Rows never valid end projected.
    """
    # Hundreds of tiny (n, d) steps: one thread is far faster than two fighting over shared cores.
    with one_thread():
        return _wachter(factuals, setup, config)


def _wachter(factuals: np.ndarray, setup, config: WachterConfig) -> np.ndarray:
    torch.manual_seed(config.seed)
    module = setup.classifier.module.eval()
    x0 = torch.as_tensor(np.asarray(factuals, dtype=np.float32))
    mutable = torch.as_tensor(~setup.spec.mask("immutable"), dtype=torch.float32)  # (d,)
    project = _TorchProjector(setup.encoder)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=config.lr)
    result = project(x0)
    done = torch.zeros(len(x0), dtype=torch.bool)
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(config.max_steps):
            with torch.no_grad():
                snapped = project(x)
                newly = (module(snapped) > 0.0) & ~done  # logit > 0 <=> h > 0.5
                result[newly] = snapped[newly]
                done |= newly
            if bool(done.all()):
                break
            logits = module(x)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
            loss = (bce + config.lam * (x - x0).abs().sum(dim=1))[~done].sum()
            opt.zero_grad()
            loss.backward()
            x.grad.mul_(mutable)  # immutable features stay at the factual's values
            opt.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
                x[done] = result[done]  # Adam's momentum must not drag frozen rows
        with torch.no_grad():
            rest = ~done
            result[rest] = project(x)[rest]
    finally:
        for p in module.parameters():
            p.requires_grad_(True)
    out = result.numpy().copy()
    # Projection must never alter an immutable value, even by float error.
    immutable = setup.spec.mask("immutable")
    out[:, immutable] = np.asarray(factuals, dtype=np.float32)[:, immutable]
    return out


class _TorchProjector:
    """`MinMaxEncoder.project` in torch: clamp to [0, 1] and snap categorical and integer features."""

    def __init__(self, encoder: MinMaxEncoder):
        spec = encoder.spec
        self.min = torch.as_tensor(encoder.min_, dtype=torch.float64)
        self.range = torch.as_tensor(encoder.range_, dtype=torch.float64)
        self.snap = torch.as_tensor(spec.mask("categorical") | spec.mask("integer"))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        raw = z.detach().double().clamp(0.0, 1.0) * self.range + self.min
        raw = torch.where(self.snap, raw.round(), raw)
        return ((raw - self.min) / self.range).clamp(0.0, 1.0).float()
