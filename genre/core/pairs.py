"""Pair synthesis: which (factual-like source, favourable target) pairs the generator learns from.

Sources are training points that h does not yet accept with confidence (h(x) <= gamma). Targets are
training points that h accepts (h(x) > gamma) *and* whose label is favourable. Each source keeps a
distribution over targets

    Q(x+ | x)  proportional to  exp(-lambda * cost(x, x+)) * 1[immutable features of x and x+ equal],

truncated to its `top_k` most likely targets and renormalised. Every epoch draws one fresh target per
source, so over many epochs the generator sees Q rather than one fixed nearest neighbour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.neighbors import LocalOutlierFactor


@dataclass(frozen=True)
class PairConfig:
    gamma: float = 0.7  # the paper's threshold splitting sources from targets
    lam: float = 5.0  # lambda: how sharply Q prefers cheap targets (the paper's default)
    top_k: int = 1000  # the paper's truncation of Q
    chunk: int = 1024  # sources per distance block: 1024 x 9k targets x 4 B = 37 MB on adult
    # New beyond the paper: 0 keeps every target; n > 0 drops the targets that a LOF with n neighbours, fit on
    # the training rows with the favourable label, calls outliers, so the generator learns to move towards
    # crowds of positives rather than towards isolated ones (adult's lone capital-gain targets).
    target_lof: int = 0


def split_sources_targets(
    X: np.ndarray, y: np.ndarray, h_proba: np.ndarray, gamma: float = 0.7, target_lof: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of sources (h <= gamma) and targets (h > gamma and y == 1, LOF inliers if target_lof) in X."""
    h_proba = np.asarray(h_proba)
    sources = np.flatnonzero(h_proba <= gamma)
    targets = np.flatnonzero((h_proba > gamma) & (np.asarray(y) == 1))
    if target_lof:
        favourable = np.flatnonzero(np.asarray(y) == 1)
        inlier = np.zeros(len(X), dtype=bool)
        inlier[favourable] = LocalOutlierFactor(n_neighbors=target_lof).fit_predict(np.asarray(X)[favourable]) == 1
        targets = targets[inlier[targets]]
    return sources, targets


class PairSampler:
    """Q(x+ | x) for every source, stored as its top-k target indices and their cumulative probabilities.

    Parameters
    ----------
    sources : (n_s, d) encoded source points.
    targets : (n_t, d) encoded target points.
    immutable : (d,) bool mask; a pair must agree exactly on these features.
    config : PairConfig (lambda, top_k, chunk).

    After construction, `index_` is (n_s', k) int64 target indices and `cdf_` (n_s', k) float32 cumulative
    probabilities, where n_s' counts the sources that have at least one target in their immutable group
    (`kept_` holds their positions in `sources`; the others cannot be paired and are dropped).
    """

    def __init__(self, sources: np.ndarray, targets: np.ndarray, immutable: np.ndarray, config: PairConfig = PairConfig()):
        self.config = config
        src = torch.as_tensor(np.asarray(sources, dtype=np.float32))
        tgt = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        if len(tgt) == 0:
            raise ValueError("no targets: no training point has h(x) > gamma and a favourable label")
        imm = torch.as_tensor(np.asarray(immutable, dtype=bool))
        k = min(config.top_k, len(tgt))
        # Immutable groups as integer ids, so "same group" is one equality test instead of d comparisons.
        src_group, tgt_group = _group_ids(src[:, imm], tgt[:, imm])
        index = torch.empty((len(src), k), dtype=torch.int64)
        cdf = torch.empty((len(src), k), dtype=torch.float32)
        ok = torch.empty(len(src), dtype=torch.bool)
        for start in range(0, len(src), config.chunk):
            block = slice(start, start + config.chunk)
            cost = torch.cdist(src[block], tgt, p=1.0)  # (c, n_t) L1 in encoded space
            cost.masked_fill_(src_group[block, None] != tgt_group[None, :], float("inf"))
            best_cost, best_idx = torch.topk(cost, k, dim=1, largest=False)  # (c, k), cheapest first
            # Shift by the cheapest cost before exp so large costs do not underflow to an all-zero row.
            logits = -config.lam * (best_cost - best_cost[:, :1])
            weights = torch.exp(logits).nan_to_num_(0.0)  # inf - inf (group without targets) -> nan -> 0
            total = weights.sum(1, keepdim=True)
            ok[block] = total[:, 0] > 0
            index[block] = best_idx
            cdf[block] = torch.cumsum(weights / total.clamp_min(1e-30), dim=1)
        self.kept_ = torch.nonzero(ok).squeeze(1).numpy()
        # int32 halves the largest array (27k sources x 1000 on adult) without limiting n_t.
        self.index_ = index[ok].to(torch.int32)
        self.cdf_ = cdf[ok]

    def __len__(self) -> int:
        return len(self.index_)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """(n_s',) one target index per kept source, drawn from Q by inverse CDF (vectorised)."""
        # Scaling u by the row's total (1 up to rounding) keeps every draw on a target with positive mass;
        # forcing the last entry to 1 instead would give a zero-mass (other group) target a sliver.
        u = torch.rand(len(self.cdf_), 1, generator=generator) * self.cdf_[:, -1:]
        col = torch.searchsorted(self.cdf_, u).clamp_max(self.cdf_.shape[1] - 1)
        return self.index_.gather(1, col).squeeze(1).long()

    def hub_share(self, dominant: float = 0.5) -> float:
        """The largest share of the kept sources whose Q puts more than `dominant` of its mass on one same target.

        A pathology check, not part of the paper: when a lone target is the only cheap one for a whole group of
        sources (compas without `target_lof`, one seed's h: a single 69-year-old took 27 % of the sources), the
        generator learns to send the whole group there. 0 when no source has a dominant target.
        """
        if len(self.cdf_) == 0:
            return 0.0
        index, prob = self.probabilities()
        top_mass, top_col = prob.max(dim=1)
        top = index.gather(1, top_col[:, None]).squeeze(1)[top_mass > dominant]
        if len(top) == 0:
            return 0.0
        return float(torch.unique(top, return_counts=True)[1].max()) / len(self.cdf_)

    def probabilities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, prob): each kept source's top-k target indices and Q's probabilities over them."""
        prob = torch.diff(self.cdf_, dim=1, prepend=torch.zeros(len(self.cdf_), 1))
        return self.index_.long(), prob


def _group_ids(src_imm: torch.Tensor, tgt_imm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer id per row of the immutable columns, shared between sources and targets."""
    if src_imm.shape[1] == 0:
        return torch.zeros(len(src_imm), dtype=torch.int64), torch.zeros(len(tgt_imm), dtype=torch.int64)
    both = torch.cat([src_imm, tgt_imm])
    _, ids = torch.unique(both, dim=0, return_inverse=True)
    return ids[: len(src_imm)], ids[len(src_imm) :]
