"""The recourse ledger: every recourse issued, and which champion versions monitoring has judged.

SQLAlchemy 2 ORM, so any SQLAlchemy URL works (PostgreSQL included); the default is SQLite at
`GENRE_HOME/ledger.db`. Factual and recourse are stored as JSON in the applicant's units (categories as
strings), so a later classifier with a different encoder can still judge them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import (JSON, Boolean, DateTime, Float, Index, Integer, String, Text, create_engine, delete, inspect,
                        select, text, update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tasks.home import state_home


def ledger_url(home: str | Path | None = None) -> str:
    """`GENRE_LEDGER_URL` if set, else SQLite at `<GENRE_HOME>/ledger.db` (home defaults to `tasks.home.state_home()`)."""
    url = os.environ.get("GENRE_LEDGER_URL")
    if url:
        return url
    home = Path(home).resolve() if home else state_home()
    return f"sqlite:///{home / 'ledger.db'}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class RecourseEntry(Base):
    """One recourse issued to one applicant."""

    __tablename__ = "recourse"
    # Serving looks a returning applicant up by id (issue 13): one indexed query per request.
    __table_args__ = (Index("ix_recourse_dataset_applicant", "dataset", "applicant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow, index=True)
    batch_id: Mapped[str] = mapped_column(String(64), index=True)
    applicant_id: Mapped[str] = mapped_column(String(128))
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    factual: Mapped[dict] = mapped_column(JSON)
    recourse: Mapped[dict] = mapped_column(JSON)
    cost: Mapped[float] = mapped_column(Float)  # L1 in the issuing encoder's [0, 1] space
    score_factual: Mapped[float] = mapped_column(Float)  # h(x) of the issuing classifier
    score_recourse: Mapped[float] = mapped_column(Float)  # h(x+) of the issuing classifier
    classifier_version: Mapped[str] = mapped_column(String(32), index=True)
    generator_version: Mapped[str] = mapped_column(String(32))
    # True when the applicant sent an id of their own; a row number or a generated one is never honoured.
    # NULL for rows recorded before the column existed: not honoured either.
    real_id: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)


class CommitmentOverride(Base):
    """A challenger promoted although the commitment gate failed: who decided it, why, and what it voided."""

    __tablename__ = "commitment_override"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    dataset: Mapped[str] = mapped_column(String(64))
    classifier_version: Mapped[str] = mapped_column(String(32), index=True)
    generator_version: Mapped[str] = mapped_column(String(32))
    by: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    voided_share: Mapped[float] = mapped_column(Float)
    voided: Mapped[int] = mapped_column(Integer)
    rescored: Mapped[int] = mapped_column(Integer)
    affected_ids: Mapped[list] = mapped_column(JSON)


class MonitoredVersion(Base):
    """A champion classifier version that monitoring has claimed; the primary key makes the claim unique."""

    __tablename__ = "monitored_version"

    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str | None] = mapped_column(String(64), nullable=True)  # known once the run finishes
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    report_dir: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LedgerValidity(Base):
    """Share of one issuing version's recourses still valid under a monitored champion (for the plot)."""

    __tablename__ = "ledger_validity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    dataset: Mapped[str | None] = mapped_column(String(64), nullable=True)
    monitored_version: Mapped[str] = mapped_column(String(32), index=True)
    issued_by: Mapped[str] = mapped_column(String(32))
    n: Mapped[int] = mapped_column(Integer)
    still_valid: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Issued:
    """A recourse about to be written to the ledger."""

    applicant_id: str
    dataset: str
    factual: dict
    recourse: dict
    cost: float
    score_factual: float
    score_recourse: float
    classifier_version: str
    generator_version: str
    real_id: bool = True


class Ledger:
    """The ledger database behind one SQLAlchemy URL; tables are created on first use."""

    def __init__(self, url: str | None = None, timeout: float = 30.0):
        self.url = url or ledger_url()
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # Several flows may write at once: wait for SQLite's lock instead of failing at once.
            self.engine = create_engine(self.url, connect_args={"timeout": timeout})
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        try:
            Base.metadata.create_all(self.engine)
            _upgrade(self.engine)
        except Exception:
            self.engine.dispose()
            raise

    def dispose(self) -> None:
        self.engine.dispose()

    # ---- recourse ------------------------------------------------------------------------------
    def record(self, issued: list[Issued], *, batch_id: str) -> list[int]:
        """Write a batch in one transaction (all rows or none); returns their ledger ids."""
        now = _utcnow()
        rows = [RecourseEntry(requested_at=now, batch_id=batch_id, **vars(i)) for i in issued]
        with Session(self.engine) as session, session.begin():
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows]

    def discard_batch(self, batch_id: str) -> int:
        """Remove one batch's recourse rows (a batch that failed before its results reached anyone)."""
        with Session(self.engine) as session, session.begin():
            return session.execute(delete(RecourseEntry).where(RecourseEntry.batch_id == batch_id)).rowcount

    def entries(self, dataset: str | None = None, since: datetime | None = None) -> pd.DataFrame:
        """All recourses (optionally of one data set, issued at or after `since`) as a frame, oldest first."""
        query = select(RecourseEntry).order_by(RecourseEntry.id)
        if dataset is not None:
            query = query.where(RecourseEntry.dataset == dataset)
        if since is not None:
            query = query.where(RecourseEntry.requested_at >= since)
        columns = [c.name for c in RecourseEntry.__table__.columns]
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
            return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)

    def issued_to(self, dataset: str, applicant_ids: list[str]) -> pd.DataFrame:
        """Recourse issued under real applicant ids (one indexed query), oldest first; empty for no ids."""
        columns = ["id", "requested_at", "applicant_id", "factual", "recourse", "classifier_version",
                   "generator_version"]
        if not applicant_ids:
            return pd.DataFrame(columns=columns)
        # No ORDER BY in SQL: with one, SQLite walks the whole data set through ix_recourse_dataset (already in id
        # order) instead of looking the ids up in ix_recourse_dataset_applicant; the few rows found are sorted here.
        query = (select(*(getattr(RecourseEntry, c) for c in columns))
                 .where(RecourseEntry.dataset == dataset, RecourseEntry.applicant_id.in_(sorted(set(applicant_ids))),
                        RecourseEntry.real_id.is_(True)))
        with Session(self.engine) as session:
            found = pd.DataFrame([tuple(r) for r in session.execute(query).all()], columns=columns)
        return found.sort_values("id", kind="stable").reset_index(drop=True)

    def record_override(self, **fields) -> int:
        """Record a promotion that overrode the commitment gate; its id."""
        with Session(self.engine) as session, session.begin():
            row = CommitmentOverride(**fields)
            session.add(row)
            session.flush()
            return row.id

    def delete_override(self, override_id: int) -> None:
        """Take back an override whose promotion failed."""
        with Session(self.engine) as session, session.begin():
            row = session.get(CommitmentOverride, override_id)
            if row is not None:
                session.delete(row)

    def overrides(self, classifier_version: str | None = None) -> pd.DataFrame:
        """Recorded overrides (of one classifier version, if given), oldest first."""
        query = select(CommitmentOverride).order_by(CommitmentOverride.id)
        if classifier_version is not None:
            query = query.where(CommitmentOverride.classifier_version == str(classifier_version))
        columns = [c.name for c in CommitmentOverride.__table__.columns]
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
            return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)

    # ---- monitoring state ----------------------------------------------------------------------
    def claim(self, model_name: str, version: str, *, stale_after: timedelta = timedelta(hours=1)) -> bool:
        """Claim a version for monitoring; False if it was claimed before (by this or another process).

        An unfinished claim older than `stale_after` belongs to a run that died without releasing it; it is
        taken over, in one conditional UPDATE so that two pollers cannot both take it.
        """
        try:
            with Session(self.engine) as session, session.begin():
                session.add(MonitoredVersion(model_name=model_name, version=str(version)))
            return True
        except IntegrityError:
            pass
        now = _utcnow()
        with Session(self.engine) as session, session.begin():
            taken = session.execute(
                update(MonitoredVersion)
                .where(
                    MonitoredVersion.model_name == model_name,
                    MonitoredVersion.version == str(version),
                    MonitoredVersion.finished_at.is_(None),
                    MonitoredVersion.claimed_at < now - stale_after,
                )
                .values(claimed_at=now)
            )
            return taken.rowcount == 1

    def release(self, model_name: str, version: str) -> None:
        """Drop an unfinished claim (monitoring failed), so the next poll tries again."""
        with Session(self.engine) as session, session.begin():
            row = session.get(MonitoredVersion, (model_name, str(version)))
            if row is not None and row.finished_at is None:
                session.delete(row)

    def finish(self, model_name: str, version: str, *, report_dir: str, mlflow_run_id: str | None,
               validity: dict[str, tuple[int, float]], dataset: str | None = None) -> None:
        """Mark a claimed version monitored, with its report folder and ledger validity by issuing version."""
        with Session(self.engine) as session, session.begin():
            row = session.get(MonitoredVersion, (model_name, str(version)))
            if row is None:
                raise KeyError(f"{model_name} version {version} was never claimed for monitoring")
            row.finished_at, row.report_dir, row.mlflow_run_id = _utcnow(), report_dir, mlflow_run_id
            row.dataset = dataset
            session.add_all(
                LedgerValidity(model_name=model_name, dataset=dataset, monitored_version=str(version),
                               issued_by=str(by), n=int(n), still_valid=float(share))
                for by, (n, share) in validity.items()
            )

    def monitored(self, model_name: str, dataset: str | None = None) -> pd.DataFrame:
        """Finished monitoring runs (of one data set, if given), oldest first."""
        query = (
            select(MonitoredVersion)
            .where(MonitoredVersion.model_name == model_name, MonitoredVersion.finished_at.is_not(None))
            .order_by(MonitoredVersion.finished_at)
        )
        if dataset is not None:
            query = query.where(MonitoredVersion.dataset == dataset)
        columns = ["version", "dataset", "claimed_at", "finished_at", "report_dir", "mlflow_run_id"]
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
            return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)

    def last_monitored(self, model_name: str, dataset: str | None = None) -> str | None:
        """The version monitored most recently, the 'previous champion' the next report compares with.

        Per data set: one registered model may hold versions trained on different data sets.
        """
        done = self.monitored(model_name, dataset)
        return None if done.empty else str(done["version"].iloc[-1])

    def validity_history(self, model_name: str, dataset: str | None = None) -> pd.DataFrame:
        """monitored_version, issued_by, n, still_valid for every finished monitoring run (of one data set)."""
        query = select(LedgerValidity).where(LedgerValidity.model_name == model_name).order_by(LedgerValidity.id)
        if dataset is not None:
            query = query.where(LedgerValidity.dataset == dataset)
        columns = ["monitored_version", "issued_by", "n", "still_valid"]
        with Session(self.engine) as session:
            rows = session.scalars(query).all()
            return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)



def _upgrade(engine) -> None:
    """Bring a ledger made before issue 13 up to date: the `real_id` column and the applicant index."""
    columns = {c["name"] for c in inspect(engine).get_columns("recourse")}
    if "real_id" not in columns:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE recourse ADD COLUMN real_id BOOLEAN"))
    for index in RecourseEntry.__table__.indexes:
        index.create(engine, checkfirst=True)
