"""The commitment gate (issue 13) on a real ledger (SQLite in tmp) and a real h trained on a compas sample:
it blocks when the challenger would refuse more than the threshold of issued recourse, passes otherwise,
only counts the window, names the affected ledger ids; and the honour rule's own cases."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from genre.core.classifier import Classifier, ClassifierConfig
from genre.core.datasets import get_spec, load_split, split_xy
from genre.core.encoding import MinMaxEncoder
from tasks.training import commitment as promise
from tasks.serving.honour import meets, real_ids
from tasks.ledger.db import Issued, Ledger
from tasks.settings import CommitmentConfig

SPEC = get_spec("compas")


@pytest.fixture(scope="module")
def h():
    train = load_split(SPEC, "train").sample(n=1500, random_state=0)
    X, y = split_xy(train, SPEC)
    encoder = MinMaxEncoder(SPEC).fit(X)
    return Classifier(ClassifierConfig(d=SPEC.d, epochs=30, seed=0)).fit(encoder.transform(X), y), encoder


@pytest.fixture()
def ledger(tmp_path, h):
    """A ledger holding 10 recourses h accepts and 4 it refuses (test rows, recorded as issued by v1)."""
    classifier, encoder = h
    test = load_split(SPEC, "test")[list(SPEC.features)]
    score = classifier.predict_proba(encoder.transform(test))
    rows = pd.concat([test[score > 0.5].head(10), test[score <= 0.5].head(4)])
    records = rows.astype(object).to_dict(orient="records")
    issued = [Issued(applicant_id=f"p{i}", dataset="compas", factual=r, recourse=r, cost=0.1, score_factual=0.2,
                     score_recourse=0.8, classifier_version="1", generator_version="1") for i, r in enumerate(records)]
    db = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ids = db.record(issued, batch_id="b1")
    yield db, ids
    db.dispose()


def test_the_gate_blocks_above_the_threshold_and_names_the_affected_ids(ledger, h):
    db, ids = ledger
    gate = promise.commitment_gate(promise.rescore(db.entries("compas"), *h), CommitmentConfig(max_voided=0.05))
    assert gate["rescored"] == 14 and gate["voided"] == 4
    assert gate["figure"] == pytest.approx(4 / 14, abs=1e-4) and gate["threshold"] == 0.05
    assert not gate["passed"] and gate["affected_ids"] == ids[10:]
    assert gate["by_issuing_version"] == {"1": {"rescored": 14, "voided": 4}}
    tags = promise.commitment_tags(gate, "/r/commitment.json")
    assert tags["gate.commitment.affected_ids"] == ",".join(map(str, ids[10:]))
    assert tags["gate.commitment.voided"] == 4 and tags["gate.commitment.report"] == "/r/commitment.json"


def test_the_gate_passes_at_or_under_the_threshold_and_on_an_empty_window(ledger, h):
    db, _ = ledger
    judged = promise.rescore(db.entries("compas"), *h)
    assert promise.commitment_gate(judged, CommitmentConfig(max_voided=0.3))["passed"]
    future = datetime.now(timezone.utc) + timedelta(days=1)
    empty = promise.commitment_gate(promise.rescore(db.entries("compas", since=future), *h),
                                   CommitmentConfig(window_days=1))
    assert empty["passed"] and empty["rescored"] == 0 and empty["figure"] == 0.0 and empty["affected_ids"] == []


def test_the_window_only_counts_recent_recourse(ledger):
    db, _ = ledger
    config = CommitmentConfig(window_days=7)
    assert len(db.entries("compas", since=promise.window_start(config))) == 14
    later = datetime.now(timezone.utc) + timedelta(days=8)
    assert len(db.entries("compas", since=promise.window_start(config, now=later))) == 0
    assert promise.window_start(CommitmentConfig()) is None


def test_the_report_lists_every_affected_entry(ledger, h, tmp_path):
    db, ids = ledger
    entries = db.entries("compas")
    judged = promise.rescore(entries, *h)
    gate = promise.commitment_gate(judged, CommitmentConfig())
    path = promise.write_report(gate, judged, tmp_path / "run")
    report = pd.read_json(path, typ="series")
    assert [a["ledger_id"] for a in report["affected"]] == ids[10:]
    text = (tmp_path / "run" / "commitment.md").read_text()
    assert "FAIL" in text and "4 of 14" in text and "commitment.override.by" in text


def test_a_long_id_list_is_cut_on_the_tag_but_says_how_many_more():
    gate = {"affected_ids": list(range(100000, 102000)), "rescored": 3000, "voided": 2000, "window_days": None}
    text = promise.commitment_tags(gate)["gate.commitment.affected_ids"]
    assert len(text) < promise.TAG_IDS_MAX + 60
    # "100000," is 7 characters: 571 whole ids fit in the 4000 (the 572nd is cut mid-way and dropped).
    assert promise.TAG_IDS_MAX == 4000
    assert text.startswith("100000,100001,") and text.endswith(",100570 ... (+1429 more: see the report)")
    assert "100571" not in text


def test_an_override_needs_who_and_why_and_only_lifts_the_commitment_gate():
    assert promise.override_of({promise.OVERRIDE_BY: "Jane"}) is None
    assert promise.override_of({promise.OVERRIDE_BY: " ", promise.OVERRIDE_REASON: "x"}) is None
    assert promise.override_of({promise.OVERRIDE_BY: "Jane", promise.OVERRIDE_REASON: "repricing"}) == {
        "by": "Jane", "reason": "repricing"}
    only = {"gate.auc_floor.verdict": "pass", "gate.commitment.verdict": "fail"}
    assert promise.only_commitment_failed(only) == (True, ["commitment"])
    both = only | {"gate.auc_floor.verdict": "fail"}
    assert promise.only_commitment_failed(both) == (False, ["auc_floor", "commitment"])


def test_issued_recourse_becomes_weighted_favourable_rows(ledger):
    db, _ = ledger
    rows = promise.anchor_rows(db.entries("compas"), SPEC, 7.5)
    assert len(rows) == 14 and (rows[SPEC.target] == SPEC.favourable_label).all() and (rows["__weight__"] == 7.5).all()


# ---- the honour rule ----------------------------------------------------------------------------------------
FACTUAL = {"age": 30, "two_year_recid": "1", "c_charge_degree": "F", "race": "Other", "sex": "Male",
           "priors_count": 6, "length_of_stay": 20}
RECOURSE = FACTUAL | {"two_year_recid": "0", "priors_count": 2, "length_of_stay": 25}
RANGES = {"age": 60.0, "priors_count": 40.0, "length_of_stay": 100.0}


@pytest.mark.parametrize("change, met", [
    ({}, True),                                         # exactly the recourse
    ({"priors_count": 0, "length_of_stay": 40}, True),  # past it, in the recommended direction
    ({"age": 55}, True),                                # a feature the recourse left alone may move
    ({"priors_count": 3}, False),                       # short of a lowered value
    ({"length_of_stay": 24}, False),                    # short of a raised value
    ({"two_year_recid": "1"}, False),                   # the recommended category not taken
    ({"race": "African-American"}, False),              # an immutable feature changed
])
def test_a_profile_meets_a_recourse_only_when_every_change_is_made(change, met):
    assert meets(RECOURSE | change, FACTUAL, RECOURSE, SPEC, RANGES, 0.0) is met


def test_the_tolerance_is_a_share_of_the_feature_range():
    short = RECOURSE | {"priors_count": 2.8}  # 0.8 short of 2, the range is 40: 2 %
    assert not meets(short, FACTUAL, RECOURSE, SPEC, RANGES, 0.01)
    assert meets(short, FACTUAL, RECOURSE, SPEC, RANGES, 0.025)


def test_only_a_given_id_is_real():
    frame = pd.DataFrame({"applicant_id": ["a1", None, "  ", np.nan, "nan", " b2 "]})
    assert real_ids(frame, "applicant_id") == ["a1", None, None, None, None, "b2"]
    assert real_ids(frame.drop(columns="applicant_id"), "applicant_id") == [None] * 6
