"""The recourse figures on small hand-made cases whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from genre.core.datasets import DatasetSpec
from genre.core.encoding import MinMaxEncoder
from genre.core.metrics import PlausibilityScorer, cost, recourse_metrics

SPEC = DatasetSpec(
    name="toy", features=("a", "b", "colour"), target="y",
    categorical={"colour": ("red", "green", "blue")}, immutable=("colour",),
)


class _Threshold:
    """P(y = 1 | x) = x[:, 0], so a recourse is valid exactly when its first feature exceeds 0.5."""

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)[:, 0]


def _encoder() -> MinMaxEncoder:
    import pandas as pd

    return MinMaxEncoder(SPEC).fit(pd.DataFrame({"a": [0.0, 1.0], "b": [0.0, 1.0], "colour": ["red", "blue"]}))


def _plausibility() -> PlausibilityScorer:
    grid = np.array([[a, b, c] for a in np.linspace(0.6, 1.0, 5) for b in np.linspace(0, 1, 5) for c in (0, 0.5, 1)])
    return PlausibilityScorer().fit(grid)


def test_cost_is_l1_summed_over_features():
    f = np.array([[0.0, 0.0, 0.5], [1.0, 1.0, 1.0]])
    r = np.array([[0.5, 0.25, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(cost(f, r), [0.75, 2.0])


def test_all_figures_on_a_known_case():
    factuals = np.array([[0.2, 0.5, 0.0], [0.1, 0.5, 0.5], [0.3, 0.5, 1.0], [0.4, 0.5, 0.5]])
    recourses = np.array([
        [0.8, 0.5, 0.0],  # valid, plausible, cost 0.6
        [0.7, 0.5, 0.5],  # valid, plausible, cost 0.6
        [0.4, 0.5, 1.0],  # invalid (0.4), cost 0.1
        [0.9, 0.5, 0.3],  # valid, but colour changed (immutable) and 0.3 is no colour's code; cost 0.7
    ])
    out = recourse_metrics(
        factuals, recourses, encoder=_encoder(), oracle=_Threshold(), classifier=_Threshold(),
        plausibility=_plausibility(),
    )
    assert out["cost"] == pytest.approx((0.6 + 0.6 + 0.1 + 0.7) / 4)
    assert out["validity"] == pytest.approx(0.75)
    assert out["validity_classifier"] == pytest.approx(0.75)
    assert out["immutable_changed"] == 1
    assert out["categorical_out_of_domain"] == 1
    assert out["score"] == pytest.approx(out["validity"] + out["plausibility"] - out["cost"] / 3)


def test_plausibility_counts_lof_inliers():
    scorer = _plausibility()
    inside = np.array([[0.8, 0.5, 0.5], [0.7, 0.25, 0.0]])
    far = np.array([[0.0, 5.0, 0.5]])
    assert scorer.is_inlier(inside).all()
    assert not scorer.is_inlier(far).any()
    zeros = np.zeros((3, 3))
    out = recourse_metrics(
        zeros, np.vstack([inside, far]), encoder=_encoder(), oracle=_Threshold(), classifier=_Threshold(),
        plausibility=scorer,
    )
    assert out["plausibility"] == pytest.approx(2 / 3)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same"):
        recourse_metrics(np.zeros((2, 3)), np.zeros((3, 3)), encoder=_encoder(), oracle=_Threshold(),
                         classifier=_Threshold(), plausibility=_plausibility())
