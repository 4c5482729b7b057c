"""The serving ledger writes a request in two bulk inserts; each answer must still point at its own recourse."""
import pandas as pd
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from tasks.ledger import recorder
from tasks.ledger.db import Ledger, RecourseEntry
from tasks.ledger.recorder import ServingLedger


def test_each_served_row_links_its_own_recourse_and_ids_come_back_in_row_order(tmp_path, served_rows):
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = ServingLedger(url)
    try:
        statuses = ["ok", "invalid_input", "ok", "already_favourable", "ok", "no_valid_recourse", "ok"]
        first = ledger._write(served_rows("r1", statuses))
        second = ledger._write(served_rows("r2", ["invalid_input", "ok", "ok"]))
        assert ledger._write([]) == []
        answers = ledger.answers().set_index("id")
        assert list(answers.loc[first, "row"]) == list(range(1, len(statuses) + 1))
        assert list(answers.loc[second, "row"]) == [1, 2, 3]
        entries = Ledger(url).entries().set_index("id")
        linked = answers.dropna(subset=["recourse_id"])
        assert len(linked) == len(entries) == 6
        for _, row in linked.iterrows():  # the entry an answer points at is that applicant's, with its values
            entry = entries.loc[int(row["recourse_id"])]
            assert entry["applicant_id"] == row["applicant_id"]
            assert entry["factual"]["age"] + 10 == entry["recourse"]["age"]
        assert answers.loc[answers["status"] != "ok", "recourse_id"].isna().all()
    finally:
        ledger.dispose()


def test_a_request_of_mixed_statuses_is_written_in_a_few_statements_whatever_its_size(tmp_path, served_rows):
    """Issue 14: rows with and without a `reason` or a recourse used to break SQLAlchemy's bulk insert into one
    statement per run of equal column sets (and RETURNING went row by row on SQLite). Now a request is two
    executemany INSERTs and two SELECTs for the ids, however many rows and however mixed."""
    ledger = ServingLedger(f"sqlite:///{tmp_path}/ledger.db")
    try:
        ledger._write(served_rows("warm", ["ok"]))  # creates the tables
        statements = []

        @event.listens_for(ledger._open().engine, "before_cursor_execute")
        def count(conn, cursor, statement, parameters, context, executemany):
            statements.append((statement.split()[0], executemany))

        statuses = ["ok", "invalid_input", "ok", "ok", "already_favourable", "no_valid_recourse"] * 50
        ids = ledger._write(served_rows("big", statuses))
        assert len(ids) == 300
        inserts = [s for s in statements if s[0] == "INSERT"]
        assert inserts == [("INSERT", True), ("INSERT", True)]
        assert len([s for s in statements if s[0] == "SELECT"]) == 2
        answers = ledger.answers().set_index("id").loc[ids]
        assert answers["row"].tolist() == list(range(1, 301))
        assert answers["reason"].isna().tolist() == [s == "ok" for s in statuses]
        assert answers["recourse_id"].notna().tolist() == [s == "ok" for s in statuses]
    finally:
        ledger.dispose()


def test_ids_that_do_not_follow_the_insert_write_nothing_and_spool_the_request(tmp_path, monkeypatch, served_rows):
    """A stray recourse row under the request's batch id (ids that cannot be matched to the rows inserted) must
    not link an answer to somebody else's recourse: the write fails as a whole and the rows are spooled."""
    monkeypatch.setenv("GENRE_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = ServingLedger(url)
    try:
        ledger._write(served_rows("warm", ["ok"]))
        stray = served_rows("r9", ["ok"])[0]["issued"] | {"applicant_id": "someone-else"}
        with Session(ledger._open().engine) as session, session.begin():
            session.execute(insert(RecourseEntry), [dict(stray, real_id=False)])
        before = len(ledger.answers())
        monkeypatch.setattr(recorder, "_rows", lambda *a, **k: served_rows("r9", ["ok", "invalid_input", "ok"]))
        out = ledger.record(pd.DataFrame({"a": [1, 2, 3]}), pd.DataFrame({"status": ["ok"] * 3}), spec=None,
                            versions={})
        assert out == [None, None, None]
        assert len(ledger.answers()) == before  # nothing of the request was written
        assert len(Ledger(url).entries()) == 2  # the warm-up's entry and the stray one: none of the request's
        spooled = (tmp_path / "serving" / "ledger-spool.jsonl").read_text().splitlines()
        assert len(spooled) == 3
    finally:
        ledger.dispose()
