"""The versioned training store: accepted batches, a manifest, and content-addressed snapshots.

Layout under `GENRE_HOME/store/<dataset>/`: `batches/<hash>.csv` (each accepted batch, typed to the spec),
`manifest.json` (hash, source, rows, time, in ingest order) and `snapshots/<data_hash>.csv` (the
concatenation the models of that data hash were trained on). Every file is written to a temp name then
renamed, and appends hold a lock, so the store is never seen half appended.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from genre.core import files
from genre.core.datasets import DatasetSpec, file_sha256, read_table

HASH_CHARS = 16  # enough to never collide among a store's batches, short enough to read in a tag


@dataclass(frozen=True)
class Snapshot:
    path: Path
    data_hash: str
    rows: int
    batches: int


@contextmanager
def _locked(store: Path):
    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def manifest(store: Path) -> list[dict]:
    """Accepted batches in ingest order (empty for a new store)."""
    path = store / "manifest.json"
    return json.loads(path.read_text())["batches"] if path.exists() else []


def is_ingested(store: Path, content_hash: str) -> bool:
    return any(b["hash"] == content_hash for b in manifest(store))


def append_batch(store: Path, frame: pd.DataFrame, content_hash: str, source: str) -> dict | None:
    """Add a typed batch; returns its manifest entry, or None when that content is already in the store."""
    with _locked(store):
        batches = manifest(store)
        if any(b["hash"] == content_hash for b in batches):
            return None
        rel = f"batches/{content_hash[:HASH_CHARS]}.csv"
        files.write_text(store / rel, frame.to_csv(index=False))
        entry = {"hash": content_hash, "file": rel, "source": source, "rows": int(len(frame)),
                 "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        # The manifest rename is the commit point: before it the batch file is an orphan nobody reads.
        files.write_text(store / "manifest.json", json.dumps({"batches": [*batches, entry]}, indent=1))
        return entry


def data_hash(batches: list[dict]) -> str:
    """Identity of a store version: the ordered hashes of its batches."""
    return hashlib.sha256("\n".join(b["hash"] for b in batches).encode()).hexdigest()[:HASH_CHARS]


def snapshot(store: Path, spec: DatasetSpec) -> Snapshot:
    """Write (once) and return the concatenation of all accepted batches, named by its data hash."""
    with _locked(store):
        batches = manifest(store)
        if not batches:
            raise FileNotFoundError(f"the training store {store} is empty: ingest a batch first")
        key = data_hash(batches)
        path = store / "snapshots" / f"{key}.csv"
        if not path.exists():
            frame = pd.concat([read_table(store / b["file"], spec) for b in batches], ignore_index=True)
            files.write_text(path, frame.to_csv(index=False))
        rows = sum(b["rows"] for b in batches)
        return Snapshot(path=path, data_hash=key, rows=rows, batches=len(batches))
