"""A ledger that cannot be written never loses a recourse record: the rows are spooled, then replayed exactly
once, at the next successful write and by `genre ledger replay`.

The served model is the registered `genre-recourse` of a pair the real retrain flow trained; the ledger is
locked by a real process holding SQLite's exclusive lock (then `kill -9`ed), or replaced by a file that is
not a database (then restored).
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from genre.cli import main as cli
from genre.core.datasets import load_split
from tasks.ledger import spool as ledger_spool
from tasks.registry import client as registry
from tasks.ledger.db import Ledger, ledger_url
from tasks.ledger.recorder import ServingLedger
from tasks.settings import RECOURSE_MODEL

from faultkit import SPEC, assert_consistent, assert_no_input_lost, promoted_story

pytestmark = pytest.mark.slow

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness, pipeline_home):
    with promoted_story(tmp_path_factory.mktemp("ledger"), pipeline_home) as story:
        rv = registry.resolve_champion(story.settings).recourse_version
        model = mlflow.pyfunc.load_model(f"models:/{RECOURSE_MODEL}/{rv}")
        people = load_split(SPEC, "test")[list(SPEC.features)].head(40).reset_index(drop=True)
        yield story, model, people


def _counts(url: str) -> tuple[int, int]:
    ledger = ServingLedger(url)
    try:
        answers = ledger.answers()
        return len(answers), len(Ledger(url).entries())
    finally:
        ledger.dispose()


def _assert_each_key_once(url: str) -> None:
    answers = ServingLedger(url).answers()
    assert not answers.duplicated(["request_id", "row"]).any()
    issued = Ledger(url).entries()
    linked = answers["recourse_id"].dropna().astype(int)
    assert sorted(linked) == sorted(issued["id"])  # every recourse row belongs to exactly one answer


def test_a_locked_ledger_spools_and_the_next_write_replays_exactly_once(served, monkeypatch):
    story, model, people = served
    monkeypatch.setenv("GENRE_LEDGER_TIMEOUT", "1")
    url = ledger_url(story.settings.home)
    model.predict(people.head(2))  # the ledger exists and works
    before = _counts(url)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, url.removeprefix("sqlite:///")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        out = model.predict(people.iloc[2:13])  # 11 rows while the database is locked
        assert len(out) == 11 and out["ledger_id"].tolist() == [None] * 11  # answered all the same
        assert ledger_spool.pending(url) == 11
    finally:
        locker.send_signal(signal.SIGKILL)  # the lock dies with its process
        locker.wait(timeout=10)
    assert _counts(url) == before  # nothing of the 11 reached the database while it was locked
    ok = int((out["status"] == "ok").sum())
    later = model.predict(people.iloc[13:15])  # the next successful write replays the spool
    assert all(i is not None for i in later["ledger_id"])
    assert ledger_spool.pending(url) == 0
    answers, issued = _counts(url)
    assert answers == before[0] + 11 + 2
    assert issued == before[1] + ok + int((later["status"] == "ok").sum())
    _assert_each_key_once(url)
    assert_consistent(story.settings)
    assert_no_input_lost(story)


def test_a_broken_database_file_spools_until_it_is_restored_and_replayed_by_the_command(served, capsys):
    story, model, people = served
    url = ledger_url(story.settings.home)
    db = story.settings.home / "ledger.db"
    model.predict(people.head(1))
    before = _counts(url)
    aside = db.with_name("ledger.db.aside")
    shutil.move(db, aside)
    db.write_bytes(b"this is not a database\n" * 100)  # the database "killed": a file SQLite cannot open
    try:
        out = model.predict(people.iloc[15:26])
        assert out["ledger_id"].tolist() == [None] * 11 and ledger_spool.pending(url) == 11
        # Replaying while the database is still broken fails, names why, and keeps every row.
        assert cli.main(["ledger", "replay"]) == 2
        err = capsys.readouterr().err
        assert "still cannot be written" in err and "not a database" in err and "11 rows stay spooled" in err
        assert ledger_spool.pending(url) == 11
    finally:
        aside.replace(db)  # restored
    assert cli.main(["ledger", "replay"]) == 0
    assert '"replayed": 11' in capsys.readouterr().out
    assert ledger_spool.pending(url) == 0
    answers, issued = _counts(url)
    assert answers == before[0] + 11
    assert issued == before[1] + int((out["status"] == "ok").sum())
    # Again: nothing more to write, nothing written twice.
    assert cli.main(["ledger", "replay"]) == 0
    assert '"replayed": 0' in capsys.readouterr().out
    assert _counts(url) == (answers, issued)
    _assert_each_key_once(url)
    # The records are the answers given: same statuses, same recourse.
    recorded = ServingLedger(url).answers().tail(11)
    assert recorded["status"].tolist() == out["status"].tolist()
    assert [a["cost"] for a in recorded["answer"]] == out["cost"].tolist()
    assert_consistent(story.settings)
    assert_no_input_lost(story)


def test_a_replay_crashed_after_its_commit_does_not_write_twice(served):
    story, model, people = served
    url = ledger_url(story.settings.home)
    db = story.settings.home / "ledger.db"
    shutil.move(db, db.with_name("ledger.db.aside"))
    db.write_bytes(b"not a database")
    model.predict(people.iloc[26:30])
    db.with_name("ledger.db.aside").replace(db)
    spool = ledger_spool.spool_path()
    lines = spool.read_text()
    ServingLedger(url).replay()
    written = _counts(url)
    spool.write_text(lines)  # as if the process died after the commit, before the spool was rewritten
    counts = ServingLedger(url).replay()
    assert (counts["replayed"], counts["already_recorded"]) == (0, 4)
    assert _counts(url) == written and ledger_spool.pending(url) == 0
    _assert_each_key_once(url)
    assert pd.notna(ServingLedger(url).answers()["request_id"]).all()
    assert_consistent(story.settings)
