"""The recourse ledger on SQLite: round trip, all-or-nothing batches, and one monitoring claim per version."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from tasks.ledger.db import Issued, Ledger, ledger_url


def _issued(i: int, version: str = "1") -> Issued:
    return Issued(
        applicant_id=f"a{i}", dataset="compas",
        factual={"age": 30 + i, "race": "Other", "c_charge_degree": "F"},
        recourse={"age": 31 + i, "race": "Other", "c_charge_degree": "M"},
        cost=0.1 * i, score_factual=0.2, score_recourse=0.9, classifier_version=version, generator_version="4",
    )


def test_ledger_round_trip_keeps_every_field(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/sub/ledger.db")
    ids = ledger.record([_issued(1), _issued(2, version="3")], batch_id="batch-a")
    assert len(ids) == 2 and ids[0] < ids[1]
    # A second Ledger on the same file sees what the first wrote: it is durable, not in memory.
    frame = Ledger(f"sqlite:///{tmp_path}/sub/ledger.db").entries()
    assert frame["id"].tolist() == ids
    row = frame.iloc[1]
    assert row["factual"] == {"age": 32, "race": "Other", "c_charge_degree": "F"}
    assert row["recourse"]["c_charge_degree"] == "M"
    assert row["cost"] == pytest.approx(0.2)
    assert (row["classifier_version"], row["generator_version"], row["batch_id"]) == ("3", "4", "batch-a")
    assert row["requested_at"] is not None
    assert ledger.entries(dataset="adult").empty


def test_a_batch_with_a_bad_row_writes_nothing(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    bad = Issued(**(vars(_issued(2)) | {"cost": None}))
    with pytest.raises(IntegrityError):
        ledger.record([_issued(1), bad], batch_id="b")
    assert ledger.entries().empty


def test_each_version_is_claimed_once(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    first, second = Ledger(url), Ledger(url)
    assert first.claim("genre-classifier", "2") is True
    assert second.claim("genre-classifier", "2") is False
    assert second.claim("genre-classifier", "3") is True
    first.finish("genre-classifier", "2", report_dir="r/2", mlflow_run_id="run", validity={"1": (4, 0.75)},
                 dataset="compas")
    # A finished claim is never taken over, however old.
    assert second.claim("genre-classifier", "2", stale_after=timedelta(0)) is False
    assert first.last_monitored("genre-classifier") == "2"
    assert first.last_monitored("genre-classifier", "compas") == "2"
    # One registered model may hold another data set's versions: they are never its "previous champion".
    assert first.last_monitored("genre-classifier", "adult") is None
    history = first.validity_history("genre-classifier", "compas")
    assert history.to_dict("records") == [{"monitored_version": "2", "issued_by": "1", "n": 4, "still_valid": 0.75}]
    assert first.validity_history("genre-classifier", "adult").empty


def test_a_released_or_stale_claim_can_be_claimed_again(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    assert ledger.claim("genre-classifier", "5")
    ledger.release("genre-classifier", "5")
    assert ledger.claim("genre-classifier", "5")
    # A run that died without releasing: fresh claims block, stale ones are taken over once.
    assert not ledger.claim("genre-classifier", "5")
    assert ledger.claim("genre-classifier", "5", stale_after=timedelta(0))
    assert ledger.last_monitored("genre-classifier") is None


def test_finishing_an_unclaimed_version_is_an_error(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    with pytest.raises(KeyError, match="never claimed"):
        ledger.finish("genre-classifier", "9", report_dir="x", mlflow_run_id=None, validity={})


def test_ledger_url_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GENRE_LEDGER_URL", raising=False)
    monkeypatch.setenv("GENRE_HOME", str(tmp_path / "home"))
    assert ledger_url() == f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"
    monkeypatch.setenv("GENRE_LEDGER_URL", "postgresql+psycopg://u@db/ledger")
    assert ledger_url() == "postgresql+psycopg://u@db/ledger"


def test_issued_to_finds_real_ids_only_oldest_first(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    # a2's second recourse comes after a1's: the answer is in issue order, not in applicant order.
    first = ledger.record([_issued(2), _issued(1)], batch_id="b1")
    later = ledger.record([_issued(2, version="2")], batch_id="b2")
    generated = ledger.record([Issued(**(vars(_issued(3)) | {"real_id": False}))], batch_id="b3")
    found = ledger.issued_to("compas", ["a1", "a2", "a3", "a2", "nobody"])
    assert found["id"].tolist() == [*first, *later]  # a3's id was generated: never honoured
    assert found["applicant_id"].tolist() == ["a2", "a1", "a2"] and generated[0] not in found["id"].tolist()
    assert ledger.issued_to("adult", ["a1"]).empty and ledger.issued_to("compas", []).empty
