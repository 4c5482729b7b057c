"""The paper's recourse figures: cost, validity, plausibility and score, plus constraint violations.

All inputs are encoded [0, 1] matrices of shape (n, d): row i of `recourses` is the recourse of factual i.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.neighbors import LocalOutlierFactor

from genre.core.datasets import DatasetSpec
from genre.core.encoding import MinMaxEncoder

# Encoded categorical values are k / (K - 1) in float32: anything this close to a level is that level.
LEVEL_TOL = 1e-4


class _Scores(Protocol):
    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


class PlausibilityScorer:
    """LOF (n_neighbors=5, novelty) fit on the points the oracle calls positive; inliers are plausible."""

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X_positive: np.ndarray) -> "PlausibilityScorer":
        self.lof_ = LocalOutlierFactor(n_neighbors=self.n_neighbors, novelty=True)
        self.lof_.fit(np.asarray(X_positive, dtype=np.float64))
        return self

    def is_inlier(self, X: np.ndarray) -> np.ndarray:
        """(n,) bool."""
        if not hasattr(self, "lof_"):
            raise RuntimeError("PlausibilityScorer is not fitted: call fit(oracle_positive_points) first")
        return self.lof_.predict(np.asarray(X, dtype=np.float64)) == 1


# Above this share of factuals the judge already accepts, validity says little about a recourse method.
ALREADY_FAVOURABLE_WARN = 0.5


def already_favourable_warning(share: float, n: int) -> str | None:
    """A plain warning when most factuals (rows h rejects) are already favourable to the judge, else None."""
    if n == 0 or not share > ALREADY_FAVOURABLE_WARN:
        return None
    return (f"WARNING: {share:.1%} of the {n} factuals h rejects are already favourable to the judge (more than "
            f"{ALREADY_FAVOURABLE_WARN:.0%}): the judge accepts them unchanged, so validity is uninformative here; "
            f"compare methods on cost, validity under h and plausibility instead (an imbalanced data set, or an h "
            f"far stricter than the judge)")


def cost(factuals: np.ndarray, recourses: np.ndarray) -> np.ndarray:
    """(n,) L1 distance in the encoded space, summed over features."""
    return np.abs(np.asarray(recourses, np.float64) - np.asarray(factuals, np.float64)).sum(axis=1)


def immutable_changed(factuals: np.ndarray, recourses: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """(n,) bool: the recourse moved at least one immutable feature."""
    mask = spec.mask("immutable")
    diff = np.abs(np.asarray(recourses, np.float64)[:, mask] - np.asarray(factuals, np.float64)[:, mask])
    return (diff > LEVEL_TOL).any(axis=1)


def categorical_out_of_domain(recourses: np.ndarray, encoder: MinMaxEncoder) -> np.ndarray:
    """(n,) bool: some categorical feature holds a value that is not one of its categories."""
    recourses = np.asarray(recourses, np.float64)
    bad = np.zeros(len(recourses), dtype=bool)
    for j, levels in encoder.category_levels().items():
        gap = np.abs(recourses[:, j, None] - levels[None, :]).min(axis=1)
        bad |= gap > LEVEL_TOL
    return bad


def recourse_metrics(
    factuals: np.ndarray,
    recourses: np.ndarray,
    *,
    encoder: MinMaxEncoder,
    oracle: _Scores,
    classifier: _Scores,
    plausibility: PlausibilityScorer,
) -> dict:
    """Every figure of the paper's table for one method, as plain floats and ints."""
    factuals, recourses = np.asarray(factuals), np.asarray(recourses)
    if factuals.shape != recourses.shape or factuals.ndim != 2:
        raise ValueError(f"factuals {factuals.shape} and recourses {recourses.shape} must be the same (n, d)")
    spec = encoder.spec
    n, d = factuals.shape
    if n == 0:
        raise ValueError("no factuals to score")
    per_row_cost = cost(factuals, recourses)
    validity = float(np.mean(oracle.predict_proba(recourses) > 0.5))
    validity_h = float(np.mean(classifier.predict_proba(recourses) > 0.5))
    plaus = float(np.mean(plausibility.is_inlier(recourses)))
    mean_cost = float(per_row_cost.mean())
    return {
        "n": int(n),
        "cost": mean_cost,
        "cost_median": float(np.median(per_row_cost)),
        "validity": validity,
        "validity_classifier": validity_h,
        "plausibility": plaus,
        # The paper's single figure: validity + plausibility - cost / d.
        "score": validity + plaus - mean_cost / d,
        "immutable_changed": int(immutable_changed(factuals, recourses, spec).sum()),
        "categorical_out_of_domain": int(categorical_out_of_domain(recourses, encoder).sum()),
        "out_of_range": int(((recourses < -LEVEL_TOL) | (recourses > 1 + LEVEL_TOL)).any(axis=1).sum()),
    }


def setup_metrics(factuals: np.ndarray, recourses: np.ndarray, setup) -> dict:
    """`recourse_metrics` with the models of a `genre.evaluation.protocol.ProtocolSetup`."""
    return recourse_metrics(
        factuals, recourses, encoder=setup.encoder, oracle=setup.oracle,
        classifier=setup.classifier, plausibility=setup.plausibility,
    )
