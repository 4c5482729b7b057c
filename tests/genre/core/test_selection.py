"""The selection-rule registry: each rule on hand-made candidates, and what a rule needs is asked for by name."""
from __future__ import annotations

import numpy as np
import pytest

from genre.core import selection
from genre.core.selection import Candidates, Evidence


class Fixed:
    """A second opinion that returns given probabilities."""

    def __init__(self, prob):
        self.prob = np.asarray(prob, dtype=np.float64)

    def predict_proba(self, X):
        return self.prob


def candidates() -> Candidates:
    # one factual at 0, three samples: far and sure, near and unsure, middle and accepted
    samples = np.array([[[1.0, 1.0], [0.1, 0.0], [0.5, 0.0]]], dtype=np.float32)
    return Candidates(samples, np.zeros((1, 2), dtype=np.float32), np.array([[0.95, 0.4, 0.7]], dtype=np.float32))


def test_each_rule_picks_its_sample():
    c = candidates()
    assert selection.RULES["max_prob"](c, Evidence()).tolist() == [0]
    assert selection.RULES["min_cost"](c, Evidence()).tolist() == [2]  # the near one is not accepted by h
    doubts_far = Evidence(second=Fixed([0.3, 0.9, 0.8]), margin=0.6)
    assert selection.RULES["robust"](c, doubts_far).tolist() == [2]
    assert selection.RULES["robust_min_cost"](c, doubts_far).tolist() == [2]


def test_what_a_rule_needs_is_named_and_unknown_rules_listed():
    with pytest.raises(ValueError, match="select must be one of .*'max_prob'.*got 'best'"):
        selection.check("best", Evidence())
    with pytest.raises(ValueError, match="needs reference"):
        selection.check("knn_vote", Evidence())
    with pytest.raises(ValueError, match="needs a second opinion"):
        selection.check("robust_min_cost", Evidence())
    assert selection.check("robust", Evidence(second=Fixed([0.5]))) is selection.robust


def test_a_registered_rule_is_found_by_name():
    @selection.rule("test_last", needs=None)
    def last(c, e):
        return np.full(len(c.prob), c.prob.shape[1] - 1)

    try:
        assert selection.check("test_last", Evidence())(candidates(), Evidence()).tolist() == [2]
    finally:
        del selection.RULES["test_last"], selection.NEEDS["test_last"]
