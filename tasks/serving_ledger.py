"""Every answer the served `genre-recourse` model gives, recorded in the recourse ledger's database.

Two tables, one transaction per request: each `ok` recourse goes into the ledger's `recourse` table (the
rows monitoring re-judges under later champions, exactly like batch-issued recourse), and every answered
row, whatever its status, into `served_answer` (request id, row, status, reason, the applicant's values as
sent, and the id of its `recourse` entry when one was issued).

A ledger that cannot be written never loses the answer: the applicant still gets it (with `ledger_id`
None), the failure is logged, and the rows are appended to `GENRE_HOME/serving/ledger-spool.jsonl` so that
nothing issued goes unrecorded. `GENRE_SERVING_LEDGER=off` turns recording off (registration sets it while
MLflow validates the input example, which calls `predict`).
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from genre.datasets import DatasetSpec, coerce_frame
from genre.serving import OK
from tasks.ledger_db import Ledger, RecourseEntry, ledger_url

log = logging.getLogger(__name__)
LEDGER_SWITCH = "GENRE_SERVING_LEDGER"


class _Base(DeclarativeBase):
    pass


class ServedAnswer(_Base):
    """One answered row of one request to the served recourse model."""

    __tablename__ = "served_answer"

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


def recording_enabled() -> bool:
    return os.environ.get(LEDGER_SWITCH, "on").strip().lower() not in {"off", "0", "false", "no"}


class ServingLedger:
    """Writes a request's answers; opened lazily on the first request (the URL is read then)."""

    def __init__(self, url: str | None = None):
        self.url = url or ledger_url()
        self._ledger: Ledger | None = None

    def _open(self) -> Ledger:
        if self._ledger is None:
            ledger = Ledger(self.url)
            _Base.metadata.create_all(ledger.engine)
            self._ledger = ledger
        return self._ledger

    def record(self, applicants: pd.DataFrame, answers: pd.DataFrame, *, spec: DatasetSpec,
               versions: dict[str, str], applicant_ids: list[str] | None = None) -> list[int | None]:
        """Record every row (one transaction); returns served_answer ids, or Nones if the ledger failed."""
        request_id = uuid.uuid4().hex
        ids = applicant_ids or [f"{request_id[:12]}#{i + 1}" for i in range(len(answers))]
        rows = _rows(applicants, answers, spec, versions, request_id, ids)
        try:
            return self._write(rows)
        except Exception:  # any database error: the answer must still reach the applicant
            log.exception("ledger %s could not record request %s; spooling %d rows", self.url, request_id, len(rows))
            _spool(rows)
            return [None] * len(rows)

    def _write(self, rows: list[dict]) -> list[int]:
        engine = self._open().engine
        with Session(engine) as session, session.begin():
            served = []
            for r in rows:
                entry = None
                if r["issued"] is not None:
                    entry = RecourseEntry(**r["issued"])
                    session.add(entry)
                    session.flush()
                served.append(ServedAnswer(recourse_id=entry.id if entry else None, **r["served"]))
            session.add_all(served)
            session.flush()
            return [s.id for s in served]

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


def _rows(applicants: pd.DataFrame, answers: pd.DataFrame, spec: DatasetSpec, versions: dict[str, str],
          request_id: str, ids: list[str]) -> list[dict]:
    dataset, features = spec.name, list(spec.features)
    now = datetime.now(timezone.utc)
    sent = applicants.reset_index(drop=True).astype(object)
    sent = sent.where(sent.notna(), None)
    factuals = _typed_factuals(sent, answers, spec)
    out = []
    for i, a in enumerate(answers.to_dict(orient="records")):
        applicant = {c: _text(sent.at[i, c]) for c in sent.columns}
        issued = None
        if a["status"] == OK:
            issued = dict(
                requested_at=now, batch_id=f"serve-{request_id[:24]}", applicant_id=ids[i], dataset=dataset,
                factual=factuals[i],
                recourse={f: a[f] for f in features}, cost=a["cost"], score_factual=a["score"],
                score_recourse=a["probability"], classifier_version=versions["classifier_version"],
                generator_version=versions["generator_version"])
        served = dict(answered_at=now, request_id=request_id, row=i + 1, applicant_id=ids[i], dataset=dataset,
                      status=a["status"], reason=a["reason"], applicant=applicant, answer=a,
                      classifier_version=versions["classifier_version"],
                      generator_version=versions["generator_version"])
        out.append({"issued": issued, "served": served})
    return out


def _text(value) -> str | None:
    return None if value is None else str(value)


def _typed_factuals(sent: pd.DataFrame, answers: pd.DataFrame, spec: DatasetSpec) -> dict[int, dict]:
    """Row -> the factual in the applicant's typed units (as batch recourse stores it), for the ok rows."""
    ok = [i for i, s in enumerate(answers["status"]) if s == OK]
    if not ok:
        return {}
    typed = coerce_frame(sent.loc[ok, list(spec.features)], spec, source="request")
    return dict(zip(ok, json.loads(typed.to_json(orient="records"))))


def _spool(rows: list[dict]) -> None:
    home = Path(os.environ.get("GENRE_HOME", ".genre")).resolve()
    path = home / "serving" / "ledger-spool.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r, default=str) + "\n")
    except OSError:
        log.exception("could not spool %d ledger rows to %s either", len(rows), path)
