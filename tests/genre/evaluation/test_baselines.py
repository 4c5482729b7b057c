"""Behaviour of the two search baselines on compas: constraints hold, NNR is valid under h, seeds repeat."""
from __future__ import annotations

import numpy as np
import pytest

from genre.evaluation import baselines
from genre.evaluation.baselines import WachterConfig, nearest_neighbour_recourse, wachter_recourse
from genre.evaluation.methods import METHODS, get_method, register_method
from genre.core.metrics import categorical_out_of_domain, setup_metrics


@pytest.fixture(scope="module")
def factuals(compas_setup):
    return compas_setup.pick_factuals(100, seed=0)


@pytest.fixture(scope="module")
def recourses(compas_setup, factuals):
    return {name: METHODS[name](factuals, compas_setup) for name in ("nnr", "wachter")}


@pytest.mark.parametrize("method", ["nnr", "wachter"])
def test_immutable_features_never_change(compas_setup, factuals, recourses, method):
    immutable = compas_setup.spec.mask("immutable")
    np.testing.assert_array_equal(recourses[method][:, immutable], factuals[:, immutable])


@pytest.mark.parametrize("method", ["nnr", "wachter"])
def test_categorical_values_stay_in_their_domain(compas_setup, recourses, method):
    assert not categorical_out_of_domain(recourses[method], compas_setup.encoder).any()
    assert recourses[method].min() >= 0.0 and recourses[method].max() <= 1.0


def test_nnr_is_valid_under_h(compas_setup, recourses):
    assert (compas_setup.classifier.predict_proba(recourses["nnr"]) > 0.7).all()


def test_nnr_picks_the_cheapest_allowed_training_point(compas_setup, factuals, recourses):
    s = compas_setup
    pool = s.X_train[s.classifier.predict_proba(s.X_train) > 0.7]
    immutable = s.spec.mask("immutable")
    for i in range(0, len(factuals), 17):  # brute force on a few rows
        same = (pool[:, immutable] == factuals[i, immutable]).all(axis=1)
        best = np.abs(pool[same] - factuals[i]).sum(axis=1).min()
        assert np.abs(recourses["nnr"][i] - factuals[i]).sum() == pytest.approx(best, abs=1e-5)


def test_nnr_chunking_does_not_change_the_answer(compas_setup, factuals, recourses, monkeypatch):
    monkeypatch.setattr(baselines, "_MAX_CELLS", 5000)  # forces many small chunks
    chunked = nearest_neighbour_recourse(factuals, compas_setup)
    np.testing.assert_allclose(np.abs(chunked - factuals).sum(1), np.abs(recourses["nnr"] - factuals).sum(1), atol=1e-6)


def test_wachter_is_mostly_valid_under_h_after_projection(compas_setup, recourses):
    assert np.mean(compas_setup.classifier.predict_proba(recourses["wachter"]) > 0.5) >= 0.9


def test_wachter_with_a_fixed_seed_gives_identical_output(compas_setup, factuals, recourses):
    np.testing.assert_array_equal(wachter_recourse(factuals, compas_setup), recourses["wachter"])


def test_wachter_leaves_the_classifier_trainable(compas_setup, factuals):
    wachter_recourse(factuals[:5], compas_setup, WachterConfig(max_steps=3))
    assert all(p.requires_grad for p in compas_setup.classifier.module.parameters())


def test_both_methods_report_every_figure(compas_setup, factuals, recourses):
    for rec in recourses.values():
        out = setup_metrics(factuals, rec, compas_setup)
        for key in ("cost", "validity", "validity_classifier", "plausibility", "score"):
            assert np.isfinite(out[key])
        assert out["immutable_changed"] == 0 and out["categorical_out_of_domain"] == 0


def test_registry_takes_new_methods():
    def stay(factuals, setup):
        return factuals.copy()

    register_method("test-stay", stay)
    try:
        assert get_method("test-stay") is stay
        assert get_method("genre.evaluation.baselines:wachter_recourse") is wachter_recourse
        with pytest.raises(KeyError, match="unknown recourse method"):
            get_method("no-such-method")
    finally:
        METHODS.pop("test-stay")


def test_nnr_keeps_immutables_for_a_batch_that_lacks_some_immutable_group(compas_setup, factuals):
    # One factual alone holds a single race/sex group; the pool holds all of them.
    immutable = compas_setup.spec.mask("immutable")
    for row in factuals[:12]:
        one = row[None, :]
        recourse = nearest_neighbour_recourse(one, compas_setup)
        np.testing.assert_array_equal(recourse[:, immutable], one[:, immutable])
