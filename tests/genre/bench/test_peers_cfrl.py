"""CFRL through its own venv: the job it gets, the recourses it sends back, and its cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from genre.core.metrics import categorical_out_of_domain, immutable_changed
from genre.bench.peers_cfrl import codes, job_arrays, run_cfrl


def test_codes_are_category_indices_and_whole_numbers(compas_setup):
    s = compas_setup
    raw = s.encoder.inverse_transform(s.X_test[:50])
    c = codes(s.X_test[:50], s.encoder)
    race = s.spec.features.index("race")
    assert [s.spec.categorical["race"][int(i)] for i in c[:, race]] == list(raw["race"])
    np.testing.assert_array_equal(c[:, s.spec.features.index("priors_count")], raw["priors_count"].to_numpy())
    np.testing.assert_allclose((c - s.encoder.min_) / s.encoder.range_, s.X_test[:50], atol=1e-6)


def test_the_job_carries_h_and_the_constraints(compas_setup):
    s = compas_setup
    job = job_arrays(s, s.X_test[:3], train_steps=7)
    meta = json.loads(str(job["meta"]))
    assert meta["immutable"] == ["race", "sex"] and meta["ranges"] == {} and meta["train_steps"] == 7
    assert {s.spec.features[int(i)] for i in meta["category_map"]} == set(s.spec.categorical)
    # h rebuilt from the job's weights gives h's probabilities on the job's codes.
    z = (job["factuals"] - job["lo"]) / job["span"]
    for i in range(4):
        z = z @ job[f"h_w{i}"].T + job[f"h_b{i}"]
        z = np.maximum(z, 0) if i < 3 else z
    np.testing.assert_allclose(1 / (1 + np.exp(-z[:, 0])), s.classifier.predict_proba(s.X_test[:3]), atol=1e-5)


@pytest.mark.slow
def test_cfrl_answers_in_its_own_venv_and_keeps_immutables(compas_setup):
    s = compas_setup
    factuals = s.pick_factuals(12, seed=0)
    first = run_cfrl(s, factuals, train_steps=60, ae_epochs=1, answer_threads=(1, 2), latency_queries=2)
    assert first.recourses.shape == factuals.shape and not first.cached
    assert first.versions["alibi"] == "0.9.6" and first.versions["numpy"].startswith("1.")
    assert not immutable_changed(factuals, first.recourses, s.spec).any()
    assert not categorical_out_of_domain(first.recourses, s.encoder).any()
    assert first.train_seconds > 0 and first.batch_seconds > 0 and len(first.latency_seconds) == 2
    assert set(first.batch_seconds_by_threads) == {"1", "2"} and first.answer_threads in (1, 2)
    assert first.batch_seconds == min(first.batch_seconds_by_threads.values())
    again = run_cfrl(s, factuals, train_steps=60, ae_epochs=1, latency_queries=2)
    assert again.cached and again.train_seconds == first.train_seconds
    np.testing.assert_allclose(again.recourses, first.recourses, atol=1e-6)
