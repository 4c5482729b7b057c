"""The classifier h and the oracle under the paper's protocol (compas, trained once per session)."""
from __future__ import annotations

import numpy as np
import torch

from genre.core.classifier import Classifier


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1)]))


def test_classifier_beats_the_majority_class_on_compas_test(compas_setup):
    s = compas_setup
    pred = s.classifier.predict(s.X_test)
    majority = int(np.mean(s.y_train) > 0.5)
    # h is class-balanced (the paper's recipe), so it is judged by balanced accuracy: the majority rule
    # scores exactly 0.5 there; plain accuracy would reward always predicting the common class.
    assert _balanced_accuracy(s.y_test, np.full_like(s.y_test, majority)) == 0.5
    assert _balanced_accuracy(s.y_test, pred) > 0.6


def test_oracle_beats_the_majority_class_on_compas_test(compas_setup):
    s = compas_setup
    majority = max(np.mean(s.y_test), 1 - np.mean(s.y_test))
    assert np.mean((s.oracle.predict_proba(s.X_test) > 0.5) == s.y_test) > majority


def test_h_learns_from_oracle_labels_not_the_real_ones(compas_setup):
    s = compas_setup
    assert s.h_labels.shape == s.y_train.shape
    assert 0 < np.mean(s.h_labels != s.y_train) < 0.5  # drawn from P_oracle: close to, not equal to, y


def test_checkpoint_is_config_plus_state_and_reloads(compas_setup, tmp_path):
    path = tmp_path / "h.pt"
    compas_setup.classifier.save(path)
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {"config", "state_dict"}
    again = Classifier.load(path)
    np.testing.assert_array_equal(again.predict_proba(compas_setup.X_test), compas_setup.classifier.predict_proba(compas_setup.X_test))


def test_training_with_a_fixed_seed_is_repeatable(compas_setup):
    s = compas_setup
    cfg = s.classifier.config.__class__(d=s.d, epochs=1, seed=3)
    a = Classifier(cfg).fit(s.X_train[:500], s.h_labels[:500]).predict_proba(s.X_test)
    b = Classifier(cfg).fit(s.X_train[:500], s.h_labels[:500]).predict_proba(s.X_test)
    np.testing.assert_array_equal(a, b)
