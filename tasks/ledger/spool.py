"""The serving ledger's spool: rows the database could not take wait in `GENRE_HOME/serving/ledger-spool.jsonl`
and are replayed exactly once, at the next successful write and by `genre ledger replay`.

Each spooled row carries its idempotency key (request id and row number, unique in `served_answer`) and the
ledger it was meant for (URL without password). A replay holds the spool's lock, writes the rows the
database lacks in one transaction, then rewrites the spool without them; a crash between the two only means
the next replay finds those keys present and drops the lines. Appends take the same lock, so a rewrite never
loses a row spooled meanwhile.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from genre.core import files

from tasks.home import state_home

log = logging.getLogger(__name__)
DATETIMES = {"issued": ("requested_at",), "served": ("answered_at",)}


def spool_path() -> Path:
    return state_home() / "serving" / "ledger-spool.jsonl"


def ledger_name(url: str) -> str:
    """The URL as written in the spool: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _locked(path: Path, wait: bool = True):
    """The spool's lock; yields False (and holds nothing) when `wait` is False and another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def append(rows: list[dict], url: str) -> Path:
    """Add rows (each {"key", "issued", "served"}) for the ledger at `url`; returns the spool's path."""
    path = spool_path()
    with _locked(path):
        with open(path, "a") as fh:
            for r in rows:
                fh.write(json.dumps({**r, "ledger": ledger_name(url)}, default=_iso) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return path


def pending(url: str | None = None) -> int:
    """How many spooled rows wait (for the ledger at `url`, or for any)."""
    path = spool_path()
    if not path.exists():
        return 0
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(1 for r in lines if url is None or r.get("ledger") == ledger_name(url))


def replay(url: str, write_missing, *, wait: bool = True) -> dict:
    """Write this ledger's spooled rows with `write_missing(rows) -> (written, already there)`, then drop them
    from the spool. Raises (spool untouched) when the database still fails; returns the counts."""
    path = spool_path()
    counts = {"replayed": 0, "already_recorded": 0, "left_for_other_ledgers": 0, "unreadable_lines": 0,
              "spool": str(path), "busy": False}
    if not path.exists():
        return counts
    with _locked(path, wait) as held:
        if not held:
            return counts | {"busy": True}
        mine, others, bad = [], [], []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                row = _parse(json.loads(line))
            except (ValueError, KeyError, TypeError):
                bad.append(line)
                continue
            (mine if row.get("ledger") in (None, ledger_name(url)) else others).append((line, row))
        if mine:
            counts["replayed"], counts["already_recorded"] = write_missing([r for _, r in mine])
        if bad:  # kept for a person to read, never silently dropped
            with open(path.with_name("ledger-spool.unreadable.jsonl"), "a") as fh:
                fh.write("\n".join(bad) + "\n")
        if mine or bad:  # otherwise the file is as it was: leave it (no rewrite on every serving request)
            if others:
                files.write_text(path, "".join(line + "\n" for line, _ in others))
            else:
                path.unlink()  # empty: gone, so the next request's `exists` check skips the lock and the read
        counts["left_for_other_ledgers"], counts["unreadable_lines"] = len(others), len(bad)
    if counts["replayed"] or counts["already_recorded"]:
        log.info("ledger %s: replayed %d spooled rows (%d were recorded already)", ledger_name(url),
                 counts["replayed"], counts["already_recorded"])
    return counts


def _iso(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _parse(row: dict) -> dict:
    for part, keys in DATETIMES.items():
        if row.get(part):
            for k in keys:
                row[part][k] = datetime.fromisoformat(row[part][k])
    return row
