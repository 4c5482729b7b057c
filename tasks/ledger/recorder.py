"""Every answer the served `genre-recourse` model gives, recorded in the recourse ledger's database.

Two tables, one transaction per request: each `ok` recourse goes into the ledger's `recourse` table (the
rows monitoring re-judges under later champions, exactly like batch-issued recourse), and every answered
row, whatever its status, into `served_answer` (request id, row, status, reason, the applicant's values as
sent, and the id of its `recourse` entry when one was issued). (request id, row) is unique: the
idempotency key that lets spooled rows be replayed exactly once.

A ledger that cannot be written never loses the answer: the applicant still gets it (with `ledger_id`
None), the failure is logged, and the rows are appended to `GENRE_HOME/serving/ledger-spool.jsonl`
(`tasks.ledger.spool`), replayed at the next successful write and by `genre ledger replay`. A locked SQLite
ledger is waited for `GENRE_LEDGER_TIMEOUT` seconds (default 5) before the rows are spooled.
`GENRE_SERVING_LEDGER=off` turns recording off (registration sets it while MLflow validates the input
example, which calls `predict`).
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, insert, select, tuple_
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from genre.core.datasets import DatasetSpec, coerce_frame
from genre.core.serving import OK
from tasks.ledger import spool as ledger_spool
from tasks.ledger.db import Ledger, RecourseEntry, ledger_url

log = logging.getLogger(__name__)
LEDGER_SWITCH = "GENRE_SERVING_LEDGER"
TIMEOUT = "GENRE_LEDGER_TIMEOUT"


class _Base(DeclarativeBase):
    pass


class ServedAnswer(_Base):
    """One answered row of one request to the served recourse model."""

    __tablename__ = "served_answer"
    __table_args__ = (Index("ux_served_answer_request_row", "request_id", "row", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    row: Mapped[int] = mapped_column(Integer)
    applicant_id: Mapped[str] = mapped_column(String(128))
    dataset: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    applicant: Mapped[dict] = mapped_column(JSON)  # the values as sent (strings), also for invalid rows
    answer: Mapped[dict] = mapped_column(JSON)  # the answer row as returned
    recourse_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its `recourse` entry, when ok
    classifier_version: Mapped[str] = mapped_column(String(32))
    generator_version: Mapped[str] = mapped_column(String(32))


class HonouredAnswer(_Base):
    """An answer that kept a promise: the served row accepted on an issued recourse (issue 13)."""

    __tablename__ = "honoured_answer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    served_answer_id: Mapped[int] = mapped_column(Integer, index=True)
    recourse_id: Mapped[int] = mapped_column(Integer, index=True)  # the ledger entry honoured
    applicant_id: Mapped[str] = mapped_column(String(128))
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    classifier_version: Mapped[str] = mapped_column(String(32))  # the champion that would have judged it
    generator_version: Mapped[str] = mapped_column(String(32))


def recording_enabled() -> bool:
    return os.environ.get(LEDGER_SWITCH, "on").strip().lower() not in {"off", "0", "false", "no"}


class ServingLedger:
    """Writes a request's answers; opened lazily on the first request (the URL is read then)."""

    def __init__(self, url: str | None = None):
        self.url = url or ledger_url()
        self._ledger: Ledger | None = None

    def _open(self) -> Ledger:
        if self._ledger is None:
            ledger = Ledger(self.url, timeout=float(os.environ.get(TIMEOUT, "5")))
            try:
                _Base.metadata.create_all(ledger.engine)
                for index in ServedAnswer.__table__.indexes:  # a ledger made before the key existed gets it
                    index.create(ledger.engine, checkfirst=True)
            except Exception:
                ledger.dispose()
                raise
            self._ledger = ledger
        return self._ledger

    def _reset(self) -> None:
        """Forget the engine after a failure: a replaced or repaired database file is opened afresh."""
        if self._ledger is not None:
            self._ledger.dispose()
            self._ledger = None

    def record(self, applicants: pd.DataFrame, answers: pd.DataFrame, *, spec: DatasetSpec,
               versions: dict[str, str], applicant_ids: list[str | None] | None = None,
               honoured: dict[int, list[int]] | None = None, typed: pd.DataFrame | None = None) -> list[int | None]:
        """Record every row (one transaction); returns served_answer ids, or Nones if the ledger failed (the
        rows are spooled). After a successful write, rows spooled earlier are replayed.

        `applicant_ids`: per row the id the applicant gave, or None (then a generated id is stored, and its
        recourse is never honoured later); `honoured`: row -> the ledger ids an `accepted_by_commitment`
        answer kept (each recorded in `honoured_answer`); `typed`: the rows as `genre.core.serving.answer_rows`
        read them (else they are read here again)."""
        request_id = uuid.uuid4().hex
        given = applicant_ids or [None] * len(answers)
        ids = [g if g is not None else f"{request_id[:12]}#{i + 1}" for i, g in enumerate(given)]
        rows = _rows(applicants, answers, spec, versions, request_id, ids, [g is not None for g in given],
                     honoured or {}, typed)
        try:
            written = self._write(rows)
        except Exception:  # any database error: the answer must still reach the applicant
            log.exception("ledger %s could not record request %s; spooling %d rows", self.url, request_id, len(rows))
            self._reset()
            try:
                ledger_spool.append(rows, self.url)
            except OSError:
                log.exception("could not spool %d ledger rows to %s either", len(rows), ledger_spool.spool_path())
            return [None] * len(rows)
        try:
            self.replay(wait=False)  # whoever holds the spool's lock is replaying it already
        except Exception:
            log.exception("ledger %s: replaying the spool failed; the rows stay spooled", self.url)
            self._reset()
        return written

    def replay(self, wait: bool = True) -> dict:
        """Write the spooled rows this ledger lacks, exactly once; see `tasks.ledger.spool.replay`."""
        return ledger_spool.replay(self.url, self._write_missing, wait=wait)

    def _write(self, rows: list[dict]) -> list[int]:
        with Session(self._open().engine) as session, session.begin():
            return self._add(session, rows)

    def _write_missing(self, rows: list[dict]) -> tuple[int, int]:
        """Insert the rows whose (request id, row) key is absent, in one transaction: (written, already there)."""
        keys = [(r["served"]["request_id"], r["served"]["row"]) for r in rows]
        with Session(self._open().engine) as session, session.begin():
            present = set()
            for chunk in _chunks(keys):
                present |= set(session.execute(
                    select(ServedAnswer.request_id, ServedAnswer.row)
                    .where(tuple_(ServedAnswer.request_id, ServedAnswer.row).in_(chunk))).all())
            missing = [r for r, k in zip(rows, keys) if k not in present]
            self._add(session, missing)
        return len(missing), len(rows) - len(missing)

    def issued_to(self, dataset: str, applicant_ids: list[str]) -> pd.DataFrame:
        """The recourse issued to these (real) applicant ids: one indexed query (`Ledger.issued_to`). A ledger
        that cannot be read honours nobody (the champion answers); the failure is logged."""
        try:
            return self._open().issued_to(dataset, applicant_ids)
        except Exception:
            log.exception("ledger %s: could not look up issued recourse; no promise is honoured in this request",
                          self.url)
            self._reset()
            return pd.DataFrame(columns=["id", "requested_at", "applicant_id", "factual", "recourse",
                                         "classifier_version", "generator_version"])

    @staticmethod
    def _add(session: Session, rows: list[dict]) -> list[int]:
        """Two bulk INSERTs (one per table, each one executemany) and two indexed SELECTs for the new ids, so that
        each served row points at its own recourse entry; then the honoured answers (issue 13), one bulk INSERT
        when there are any. Returns the served_answer ids in the rows' order.

        Not INSERT ... RETURNING: SQLite cannot promise RETURNING's order, so SQLAlchemy sends such an insert one
        row at a time there (565 ok rows of one request took 42-51 ms in `record` on this machine). And Core
        inserts on the tables, not the ORM's bulk insert: every row has every key, a None is written as NULL
        (the ORM leaves None values out, so rows with and without a `reason` or a `recourse_id` became one
        statement per run of equal column sets: 1000 rows of mixed statuses took 151 ms), and the ORM's
        per-row bookkeeping (~4 ms a table for 1000 rows) is skipped. None of these columns has a default a NULL
        would skip."""
        if not rows:
            return []
        # Rows spooled before issue 13 lack `real_id`: not real (never honoured). One key set for the bulk insert.
        issued = [dict(r["issued"], real_id=bool(r["issued"].get("real_id", False))) for r in rows
                  if r["issued"] is not None]
        recourse_ids = iter(_insert_recourse(session, issued))
        served = [dict(r["served"], recourse_id=next(recourse_ids) if r["issued"] is not None else None)
                  for r in rows]
        session.execute(insert(ServedAnswer.__table__), served)
        found: dict[tuple[str, int], int] = {}
        for chunk in _chunks(list(dict.fromkeys(s["request_id"] for s in served))):
            found.update(((r, n), i) for r, n, i in session.execute(
                select(ServedAnswer.request_id, ServedAnswer.row, ServedAnswer.id)
                .where(ServedAnswer.request_id.in_(chunk))))
        ids = [found[(s["request_id"], s["row"])] for s in served]
        honoured = [dict(served_answer_id=i, recourse_id=int(recourse_id), applicant_id=s["applicant_id"],
                         answered_at=s["answered_at"], classifier_version=s["classifier_version"],
                         generator_version=s["generator_version"])
                    for r, s, i in zip(rows, served, ids) for recourse_id in r.get("honoured") or []]
        if honoured:
            session.execute(insert(HonouredAnswer.__table__), honoured)
        return ids

    def honoured(self) -> pd.DataFrame:
        """Every honoured_answer row, oldest first (for tests and audits)."""
        columns = [c.name for c in HonouredAnswer.__table__.columns]
        with Session(self._open().engine) as session:
            found = session.query(HonouredAnswer).order_by(HonouredAnswer.id).all()
            return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in found], columns=columns)

    def answers(self) -> pd.DataFrame:
        """Every served_answer row, oldest first (for tests and audits)."""
        engine = self._open().engine
        columns = [c.name for c in ServedAnswer.__table__.columns]
        with Session(engine) as session:
            found = session.query(ServedAnswer).order_by(ServedAnswer.id).all()
            return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in found], columns=columns)

    def dispose(self) -> None:
        if self._ledger is not None:
            self._ledger.dispose()


def _chunks(values: list, size: int = 500):
    """`values` in slices of `size`: an IN list of bounded length per query."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _insert_recourse(session: Session, issued: list[dict]) -> list[int]:
    """Insert the recourse entries (executemany) and return their ids in `issued`'s order.

    Each request's entries share a batch id no other request has (`serve-<request id>`), and a database hands out
    increasing ids to the rows of one insert in the order they come (SQLite's rowid is one more than the
    largest; PostgreSQL's sequence counts up): so this request's entries, by id, are `issued` in order. That is
    checked against the applicant ids; a mismatch raises, the transaction rolls back and the rows are spooled,
    rather than linking an answer to somebody else's recourse."""
    if not issued:
        return []
    session.execute(insert(RecourseEntry.__table__), issued)
    found = []
    for chunk in _chunks(list(dict.fromkeys(r["batch_id"] for r in issued))):
        found += session.execute(select(RecourseEntry.id, RecourseEntry.batch_id, RecourseEntry.applicant_id)
                                 .where(RecourseEntry.batch_id.in_(chunk))).all()
    found.sort()
    if [(b, a) for _, b, a in found] != [(r["batch_id"], r["applicant_id"]) for r in issued]:
        raise RuntimeError(f"the ledger's new recourse ids do not follow the {len(issued)} rows inserted "
                           f"(found {len(found)} rows under their batch ids): nothing of this request is written")
    return [i for i, _, _ in found]


def _rows(applicants: pd.DataFrame, answers: pd.DataFrame, spec: DatasetSpec, versions: dict[str, str],
          request_id: str, ids: list[str], real: list[bool], honoured: dict[int, list[int]],
          typed: pd.DataFrame | None = None) -> list[dict]:
    dataset, features = spec.name, list(spec.features)
    now = datetime.now(timezone.utc)
    applicants = applicants.reset_index(drop=True)
    factuals = _typed_factuals(applicants, answers, spec, typed)
    out = []
    for i, (a, row) in enumerate(zip(_records(answers), _records(applicants))):
        applicant = {c: _text(v) for c, v in row.items()}
        issued = None
        if a["status"] == OK:
            issued = dict(
                requested_at=now, batch_id=f"serve-{request_id[:24]}", applicant_id=ids[i], dataset=dataset,
                factual=factuals[i],
                recourse={f: a[f] for f in features}, cost=a["cost"], score_factual=a["score"],
                score_recourse=a["probability"], classifier_version=versions["classifier_version"],
                generator_version=versions["generator_version"], real_id=real[i])
        served = dict(answered_at=now, request_id=request_id, row=i + 1, applicant_id=ids[i], dataset=dataset,
                      status=a["status"], reason=a["reason"], applicant=applicant, answer=a,
                      classifier_version=versions["classifier_version"],
                      generator_version=versions["generator_version"])
        out.append({"key": f"{request_id}#{i + 1}", "issued": issued, "served": served,
                    "honoured": honoured.get(i, [])})
    return out


def _text(value) -> str | None:
    """A sent value as text; a missing one (None, NaN, NA) as None."""
    return None if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) else str(value)


def _records(frame: pd.DataFrame) -> list[dict]:
    """`frame.to_dict(orient="records")`, a column at a time: numpy scalars become Python ones (`tolist` for
    a typed column, `.item()` for one held in an object column) at a fraction of pandas' per-row cost."""
    columns = list(frame.columns)
    if frame.columns.has_duplicates or not all(isinstance(t, np.dtype) and t.kind in "biufO" for t in frame.dtypes):
        return frame.to_dict(orient="records")  # dates, categoricals, pandas' own dtypes, repeated names: pandas
    values = []
    for c in columns:
        column = frame[c].to_numpy().tolist()
        if frame[c].dtype == object:
            column = [v.item() if isinstance(v, np.generic) else v for v in column]
        values.append(column)
    return [dict(zip(columns, row)) for row in zip(*values)]


def _typed_factuals(applicants: pd.DataFrame, answers: pd.DataFrame, spec: DatasetSpec,
                    typed: pd.DataFrame | None = None) -> dict[int, dict]:
    """Row -> the factual in the applicant's typed units (as batch recourse stores it), for the ok rows.
    `applicants` as sent (its columns' own types: typed numbers take `coerce_frame`'s quick path); `typed`,
    when given, the rows already read that way (index 0..n-1), and then nothing is read again."""
    ok = [i for i, s in enumerate(answers["status"]) if s == OK]
    if not ok:
        return {}
    if typed is None:
        typed = coerce_frame(applicants.loc[ok, list(spec.features)], spec, source="request")
    else:
        typed = typed.loc[ok, list(spec.features)]
    return dict(zip(ok, json.loads(typed.to_json(orient="records"))))
