"""Prefect tasks of the ingest flow: list, inspect, hash, check against the contract, append, quarantine, archive.

Nothing in incoming may block the queue: an entry that cannot be read as the contract's CSV (bad bytes,
ragged rows, binary data, a folder, a broken link) is quarantined with its reason; one that vanished is
reported; one a process still holds open for writing waits in incoming for the next run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from genre.core.datasets import DataError, DatasetSpec, coerce_frame
from tasks.data import store

VANISHED, DEFERRED = "vanished", "deferred"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


@task(cache_policy=NO_CACHE)
def list_batches(incoming: Path) -> list[Path]:
    """Every entry named *.csv in the incoming folder (files, folders, links), oldest name first.
    Names starting with '.' are a writer's temporary files: they wait for their rename."""
    incoming.mkdir(parents=True, exist_ok=True)
    return sorted(p for p in incoming.iterdir() if p.suffix.lower() == ".csv" and not p.name.startswith("."))


def open_for_writing(paths: list[Path]) -> dict[Path, int]:
    """The paths some process holds open for writing, with its pid (Linux /proc; empty elsewhere)."""
    wanted = {os.path.realpath(p): p for p in paths}
    found: dict[Path, int] = {}
    proc = Path("/proc")
    if not wanted or not (proc / "self" / "fd").is_dir():
        return found
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = os.listdir(pid_dir / "fd")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        for fd in fds:
            try:
                target = os.readlink(pid_dir / "fd" / fd)
                if target not in wanted:
                    continue
                flags = int(re.search(r"flags:\s*([0-7]+)", (pid_dir / "fdinfo" / fd).read_text()).group(1), 8)
            except (OSError, AttributeError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found[wanted[target]] = int(pid_dir.name)
    return found


@task(cache_policy=NO_CACHE)
def inspect_batch(path: Path, writer: int | None) -> dict | None:
    """Why an entry cannot be checked now ({"status", "reason"}), or None for a regular file ready to read."""
    if not os.path.lexists(path):
        return {"status": VANISHED, "reason": f"{path.name} disappeared before it could be read (moved or "
                                              f"deleted by someone else); nothing to quarantine"}
    if writer is not None:
        return {"status": DEFERRED, "reason": f"{path.name} is still open for writing by process {writer}; "
                                              f"it stays in incoming for the next run"}
    if path.is_symlink() and not path.exists():
        return {"status": "unreadable", "reason": f"a symbolic link to {os.readlink(path)}, which does not exist"}
    if path.is_dir():
        return {"status": "unreadable", "reason": "a directory, not a CSV file"}
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):  # reading a FIFO would block the whole run
        return {"status": "unreadable", "reason": "not a regular file (a pipe, socket or device)"}
    return None


def fingerprint(path: Path) -> tuple[int, int]:
    """(size, mtime in ns): a file whose fingerprint changes while it is read was still being written."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@task(cache_policy=NO_CACHE)
def hash_batch(path: Path) -> str:
    """sha256 of the file's bytes: the batch's identity in the store."""
    return store.file_sha256(path)


@lru_cache(maxsize=8)
def _checker(suite_file: str, mtime_ns: int, spec_json: str):
    # One GX context per suite and run, not per file: building one takes about a second.
    from data_contracts.suite import load_suite
    from data_contracts.validate import ContractChecker

    return ContractChecker(load_suite(Path(suite_file)), DatasetSpec.from_dict(json.loads(spec_json)))


def _finish(report) -> dict:
    return report.to_dict() | {"summary": report.summary(), "root_cause": report.root_cause}


@task(cache_policy=NO_CACHE)
def check_batch(path: Path, spec: DatasetSpec, suite_file: Path) -> dict:
    """Validate one CSV against the data contract; the report names column, expectation and rows, and leads
    with the root cause. A file that is not readable CSV fails with that reason (FileNotFoundError: it vanished)."""
    # Imported here: GX takes seconds to import and only this task needs it.
    from data_contracts.validate import read_raw, unreadable_report

    try:
        raw = read_raw(path)
    except DataError as exc:
        return _finish(unreadable_report(path, exc))
    checker = _checker(str(suite_file), suite_file.stat().st_mtime_ns, json.dumps(spec.to_dict(), sort_keys=True))
    try:
        report = checker.check(raw, str(path))
    except Exception as exc:  # the check itself choked on this content: the file's problem, not the queue's
        report = unreadable_report(path, DataError(path, f"the contract check failed on this file: {exc!r}"))
    return _finish(report)


@task(cache_policy=NO_CACHE)
def append_batch(path: Path, spec: DatasetSpec, store_dir: Path, content_hash: str) -> dict | None:
    """Type the checked batch and append it to the store atomically (None: content already there)."""
    from data_contracts.validate import read_raw

    frame = coerce_frame(read_raw(path)[spec.columns], spec, source=str(path))
    return store.append_batch(store_dir, frame, content_hash, source=path.name)


@task(cache_policy=NO_CACHE)
def quarantine_batch(path: Path, report: dict, quarantine: Path) -> dict:
    """Move a failed batch (file, folder or link) to quarantine beside its validation JSON and readable summary."""
    quarantine.mkdir(parents=True, exist_ok=True)
    base = quarantine / f"{_stamp()}-{path.name}"
    report_path = base.with_name(base.name + ".validation.json")
    summary_path = base.with_name(base.name + ".summary.md")
    # Explanations first, then the move: a crash in between leaves the batch in incoming, not lost.
    report_path.write_text(json.dumps({k: v for k, v in report.items() if k != "summary"}, indent=1, default=str))
    summary_path.write_text(report["summary"])
    shutil.move(str(path), base)
    return {"quarantined_to": str(base), "validation": str(report_path), "summary": str(summary_path)}


@task(cache_policy=NO_CACHE)
def archive_batch(path: Path, processed: Path) -> Path:
    """Move an ingested (or already ingested) batch out of incoming; nothing is ever deleted."""
    processed.mkdir(parents=True, exist_ok=True)
    target = processed / f"{_stamp()}-{path.name}"
    shutil.move(str(path), target)
    return target
