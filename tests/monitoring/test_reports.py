"""Report builders on small frames: drift shows on a real shift and not on identical data; recourse figures are exact."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genre.core.datasets import get_spec, load_split
from monitoring.export import (
    drift_summary,
    plot_ledger_validity,
    prediction_summary,
    recourse_summary,
    save_report,
)
from monitoring.reports import (
    RecourseThresholds,
    build_data_drift_report,
    build_prediction_drift_report,
    build_recourse_report,
    recourse_frame,
)

SPEC = get_spec("compas")


@pytest.fixture(scope="module")
def compas_train() -> pd.DataFrame:
    return load_split(SPEC, "train").sample(n=1200, random_state=0).reset_index(drop=True)


def _metric_types(path: str) -> set[str]:
    return {m["config"]["type"].rsplit(":", 1)[-1] for m in json.loads(open(path).read())["metrics"]}


def test_identical_training_tables_show_no_drift(compas_train, tmp_path):
    snapshot = build_data_drift_report(reference=compas_train, current=compas_train.copy(), spec=SPEC)
    summary = drift_summary(snapshot)
    assert summary["drift_share"] == 0.0
    assert summary["drifted_columns"] == []
    paths = save_report(snapshot, tmp_path, "data_drift")
    assert "DriftedColumnsCount" in _metric_types(paths["json"])
    assert "<html" in open(paths["html"]).read(5000).lower()


def test_a_real_shift_is_reported_as_drift(compas_train):
    # The documented kind of shift the pipeline's second batch makes: older applicants with more priors.
    shifted = compas_train.copy()
    shifted["age"] = shifted["age"] + 12
    shifted["priors_count"] = shifted["priors_count"] * 2 + 1
    summary = drift_summary(build_data_drift_report(reference=compas_train, current=shifted, spec=SPEC))
    assert {"age", "priors_count"} <= set(summary["drifted_columns"])
    assert "sex" not in summary["drifted_columns"]
    assert summary["drift_share"] == pytest.approx(summary["drifted_count"] / (SPEC.d + 1))


def test_two_halves_of_the_same_split_do_not_drift(compas_train):
    summary = drift_summary(
        build_data_drift_report(reference=compas_train.iloc[:600], current=compas_train.iloc[600:], spec=SPEC)
    )
    assert summary["drift_share"] < 0.5


def test_a_table_missing_a_feature_is_refused(compas_train):
    with pytest.raises(ValueError, match="current table lacks column.*priors_count"):
        build_data_drift_report(reference=compas_train, current=compas_train.drop(columns="priors_count"), spec=SPEC)


def test_prediction_drift_same_model_has_no_flips(tmp_path):
    scores = pd.DataFrame({"score": np.random.default_rng(0).random(400)})
    snapshot = build_prediction_drift_report(reference=scores, current=scores.copy())
    summary = prediction_summary(snapshot)
    assert summary["decision_flip_share"] == 0.0
    assert summary["score_drifted"] is False
    assert summary["mean_accepted"] == pytest.approx(float((scores["score"] > 0.5).mean()))
    paths = save_report(snapshot, tmp_path, "prediction_drift")
    assert {"ValueDrift", "MeanValue", "DecisionFlipShare"} <= _metric_types(paths["json"])


def test_prediction_drift_sees_a_model_that_accepts_more():
    rng = np.random.default_rng(1)
    old = rng.random(400)
    new = np.clip(old + 0.3, 0, 1)
    summary = prediction_summary(
        build_prediction_drift_report(reference=pd.DataFrame({"score": old}), current=pd.DataFrame({"score": new}))
    )
    assert summary["score_drifted"] is True
    assert summary["decision_flip_share"] == pytest.approx(float(np.mean((old > 0.5) != (new > 0.5))))
    assert summary["decision_flip_share"] > 0.2


def test_recourse_report_figures_are_exact_and_thresholds_fail_when_breached(tmp_path):
    cost = np.array([0.2, 0.4, 0.6, 0.8])
    valid = np.array([1, 1, 1, 0])
    plausible = np.array([1, 0, 1, 1])
    current = recourse_frame(
        cost=cost, valid=valid, plausible=plausible,
        issued_by=np.array(["1", "1", "2", "10", "10"]), still_valid=np.array([1, 0, 1, 1, 1]),
    )
    previous = recourse_frame(cost=cost / 2, valid=np.ones(4), plausible=np.ones(4))
    thresholds = RecourseThresholds(validity=0.9, plausibility=0.7, cost=1.0, ledger_still_valid=0.8)
    snapshot = build_recourse_report(reference=previous, current=current, thresholds=thresholds)
    summary = recourse_summary(snapshot)
    assert summary["validity"] == pytest.approx(0.75)
    assert summary["cost"] == pytest.approx(0.5)
    assert summary["plausibility"] == pytest.approx(0.75)
    assert summary["ledger_still_valid"] == pytest.approx(0.8)
    assert summary["ledger_still_valid_by_version"] == {"1": 0.5, "2": 1.0, "10": 1.0}
    failed = " | ".join(summary["failed_tests"])
    assert "validity" in failed and "issued by classifier v1 " in failed
    assert "plausibility" not in failed and "cost" not in failed and "v10" not in failed
    paths = save_report(snapshot, tmp_path, "recourse")
    assert {"RecourseValidity", "RecourseCost", "RecoursePlausibility", "LedgerStillValid"} <= _metric_types(paths["json"])


def test_recourse_report_for_the_first_champion_needs_no_reference_or_ledger():
    current = recourse_frame(cost=np.array([0.1, 0.3]), valid=np.array([1, 1]), plausible=np.array([1, 1]))
    summary = recourse_summary(build_recourse_report(reference=None, current=current))
    assert summary["validity"] == 1.0 and summary["failed_tests"] == []
    assert summary["ledger_still_valid_by_version"] == {} and "ledger_still_valid" not in summary


def test_recourse_report_without_audit_rows_is_an_error():
    ledger_only = recourse_frame(issued_by=np.array(["1"]), still_valid=np.array([1]))
    with pytest.raises(ValueError, match="no audit rows"):
        build_recourse_report(reference=None, current=ledger_only)


def test_ledger_validity_plot_is_a_png(tmp_path):
    history = pd.DataFrame({
        "monitored_version": ["1", "2", "2"], "issued_by": ["1", "1", "2"], "n": [5, 5, 3],
        "still_valid": [1.0, 0.4, 1.0],
    })
    path = plot_ledger_validity(history, tmp_path / "ledger_validity.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    empty = plot_ledger_validity(history.iloc[:0], tmp_path / "empty.png")
    assert open(empty, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
