"""The protocol set-up: cached under GENRE_HOME and reused, factuals rejected by h."""
from __future__ import annotations

import numpy as np
import pytest

from genre.evaluation.protocol import classifier_config, load_protocol
from genre.core.datasets import ADULT, COMPAS, HELOC


def test_second_load_reuses_the_cache(compas_setup, genre_settings, quick_h):
    files = {p.name: p.stat().st_mtime_ns for p in compas_setup.cache_dir.iterdir()}
    assert {"classifier.pt", "encoder.json", "oracle.joblib"} <= set(files)
    again = load_protocol("compas", seed=0, settings=genre_settings, progress=False, classifier_overrides=quick_h)
    assert again.cache_dir == compas_setup.cache_dir
    assert {p.name: p.stat().st_mtime_ns for p in again.cache_dir.iterdir() if p.name in files} == files
    np.testing.assert_array_equal(again.classifier.predict_proba(again.X_test), compas_setup.classifier.predict_proba(compas_setup.X_test))
    # The forest sums its trees in parallel, so repeated predictions may differ in the last bits.
    np.testing.assert_allclose(again.oracle.predict_proba(again.X_test), compas_setup.oracle.predict_proba(compas_setup.X_test), rtol=1e-9)


def test_authors_recipe_for_h():
    # scripts/train_ann.py with --calibrated --hidd 10 10 10: batch 2048, 100 epochs, lr 1e-3, balanced weights,
    # the DataLoader's default order (no shuffling), on every data set.
    for spec in (ADULT, COMPAS, HELOC):
        cfg = classifier_config(spec)
        assert (cfg.hidden, cfg.lr, cfg.epochs, cfg.batch_size, cfg.balanced, cfg.shuffle) == (
            (10, 10, 10), 1e-3, 100, 2048, True, False)


def test_factuals_are_rejected_test_rows_and_seeded(compas_setup):
    s = compas_setup
    idx = s.factual_indices(50, seed=1)
    assert len(set(idx.tolist())) == 50
    assert (s.classifier.predict_proba(s.X_test[idx]) <= 0.5).all()
    np.testing.assert_array_equal(s.pick_factuals(50, seed=1), s.X_test[idx])
    assert not np.array_equal(s.factual_indices(50, seed=2), idx)


def test_asking_for_more_factuals_than_exist_is_an_error(compas_setup):
    with pytest.raises(ValueError, match="h\\(x\\) <= 0.5"):
        compas_setup.pick_factuals(len(compas_setup.X_test) + 1)


def test_all_test_negatives(compas_setup):
    s = compas_setup
    idx = s.factual_indices(None)
    np.testing.assert_array_equal(idx, np.flatnonzero(s.classifier.predict_proba(s.X_test) <= 0.5))
    assert len(s.pick_factuals(None)) == len(idx) > 200


def test_a_cached_model_pickled_under_a_moved_module_is_refit(tmp_path, monkeypatch):
    import sys
    import types

    import joblib

    from genre.evaluation import protocol

    old = types.ModuleType("genre_layout_before_the_move")

    class Judge:
        pass

    Judge.__module__, Judge.__qualname__ = old.__name__, "Judge"
    old.Judge = Judge
    monkeypatch.setitem(sys.modules, old.__name__, old)
    joblib.dump(Judge(), tmp_path / "oracle.joblib")
    monkeypatch.delitem(sys.modules, old.__name__)  # the module is gone, as genre.classifier is
    assert protocol._load_or_fit(tmp_path / "oracle.joblib", lambda: {"refit": True}) == {"refit": True}
    assert joblib.load(tmp_path / "oracle.joblib") == {"refit": True}


def test_robustness_to_model_change_uses_five_cached_retrained_classifiers(compas_setup, genre_settings, quick_h):
    retrained = compas_setup.retrained_classifiers()
    assert len(retrained) == 5
    cached = sorted(p.name for p in (compas_setup.cache_dir / "retrained").iterdir())
    assert cached == [f"h-{i}.pt" for i in range(5)]
    # Trained the way h is (same recipe), each on its own bootstrap resample: they are not h, nor each other.
    X = compas_setup.X_test
    scores = [c.predict_proba(X) for c in retrained]
    assert all(c.config.hidden == compas_setup.classifier.config.hidden for c in retrained)
    assert all(not np.allclose(s, compas_setup.classifier.predict_proba(X)) for s in scores)
    assert not np.allclose(scores[0], scores[1])
    # The figure: per retrained classifier, the share it accepts, averaged.
    rows = X[:50]
    expected = np.mean([np.mean(s[:50] > 0.5) for s in scores])
    assert compas_setup.validity_retrained(rows) == pytest.approx(expected)
    # A second load reads them back rather than retraining (same predictions).
    again = load_protocol("compas", seed=0, settings=genre_settings, progress=False, classifier_overrides=quick_h)
    np.testing.assert_array_equal(again.retrained_classifiers()[2].predict_proba(X), scores[2])
