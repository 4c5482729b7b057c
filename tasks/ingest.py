"""Prefect tasks of the ingest flow: list, hash, check against the contract, append, quarantine, archive."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from genre.datasets import DataError, DatasetSpec, coerce_frame
from tasks import store


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


@task(cache_policy=NO_CACHE)
def list_batches(incoming: Path) -> list[Path]:
    """CSV files waiting in the incoming folder, oldest name first."""
    incoming.mkdir(parents=True, exist_ok=True)
    return sorted(p for p in incoming.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


@task(cache_policy=NO_CACHE)
def hash_batch(path: Path) -> str:
    """sha256 of the file's bytes: the batch's identity in the store."""
    return store.file_sha256(path)


@task(cache_policy=NO_CACHE)
def check_batch(path: Path, spec: DatasetSpec, suite_file: Path) -> dict:
    """Validate one CSV against the data contract; the report names column, expectation and rows."""
    # Imported here: GX takes seconds to import and only this task needs it.
    from data_contracts.suite import load_suite
    from data_contracts.validate import ContractChecker, ContractReport, read_raw

    try:
        raw = read_raw(path)
    except DataError as exc:
        return ContractReport(file=str(path), rows=0, success=False, failures=[
            {"column": None, "expectation": "readable CSV", "intent": "a header and rows", "examples": [],
             "observed": str(exc)}]).to_dict() | {"summary": f"# Contract FAILED: {path}\n\n{exc}\n"}
    report = ContractChecker(load_suite(suite_file), spec).check(raw, str(path))
    return report.to_dict() | {"summary": report.summary()}


@task(cache_policy=NO_CACHE)
def append_batch(path: Path, spec: DatasetSpec, store_dir: Path, content_hash: str) -> dict | None:
    """Type the checked batch and append it to the store atomically (None: content already there)."""
    from data_contracts.validate import read_raw

    frame = coerce_frame(read_raw(path)[spec.columns], spec, source=str(path))
    return store.append_batch(store_dir, frame, content_hash, source=path.name)


@task(cache_policy=NO_CACHE)
def quarantine_batch(path: Path, report: dict, quarantine: Path) -> dict:
    """Move a failed batch to quarantine beside its validation JSON and readable summary."""
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
