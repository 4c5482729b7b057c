"""Ingest flow: every CSV in the incoming folder is checked against the data contract, then either
appended to the versioned training store or moved to quarantine with its validation result.

One bad entry never fails the run or blocks the queue: whatever cannot be read as the contract's CSV is
quarantined with its reason and the flow goes on with the next file (see docs/faults.md).
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from genre.core.datasets import DatasetSpec
from tasks.data.ingest import (
    DEFERRED,
    VANISHED,
    append_batch,
    archive_batch,
    check_batch,
    fingerprint,
    hash_batch,
    inspect_batch,
    list_batches,
    open_for_writing,
    quarantine_batch,
)
from tasks.settings import PipelineSettings
from tasks.data.specs import contract_for, resolve_spec
from tasks.data.store import is_ingested


@flow(name="ingest", flow_run_name="ingest-{dataset}")
def ingest(dataset: str = "compas", incoming: str | None = None, config: str | None = None) -> list[dict]:
    """Validate each incoming batch; pass -> store, fail or unreadable -> quarantine, seen before -> no-op.
    `dataset`: a built-in name, a spec file, or the name of a spec file used before (`tasks.data.specs`)."""
    settings = PipelineSettings.from_env(config)
    spec = resolve_spec(dataset, settings.home)
    paths = list_batches(Path(incoming) if incoming else settings.incoming(spec.name))
    writers = open_for_writing(paths)
    outcomes = []
    for path in paths:
        try:
            outcome = _ingest_one(path, writers.get(path), spec, settings)
        except FileNotFoundError:  # it went away between two steps: nothing of ours to lose
            outcome = {"file": path.name, "status": VANISHED, "reason": f"{path.name} disappeared while it was "
                                                                         f"being ingested (moved or deleted)"}
        if outcome["status"] in (VANISHED, DEFERRED):
            get_run_logger().warning("%s: %s", path.name, outcome["reason"])
        outcomes.append(outcome)
    return outcomes


def _ingest_one(path: Path, writer: int | None, spec: DatasetSpec, settings: PipelineSettings) -> dict:
    log = get_run_logger()
    blocked = inspect_batch(path, writer)
    if blocked is not None and blocked["status"] in (VANISHED, DEFERRED):
        return {"file": path.name, **blocked}
    if blocked is not None:
        from data_contracts.readable import Unreadable
        from data_contracts.validate import unreadable_report

        report = unreadable_report(path, Unreadable(path, blocked["reason"]))
        report = report.to_dict() | {"summary": report.summary(), "root_cause": report.root_cause}
        return _quarantine(path, None, report, settings, spec)
    before = fingerprint(path)
    content_hash = hash_batch(path)
    if is_ingested(settings.store(spec.name), content_hash):
        archived = archive_batch(path, settings.processed(spec.name))
        log.info("%s: content %s already in the store, nothing appended", path.name, content_hash[:16])
        return {"file": path.name, "status": "duplicate", "hash": content_hash, "archived": str(archived)}
    report = check_batch(path, spec, contract_for(spec, settings.home, settings.data_dir, log))
    if fingerprint(path) != before:
        return {"file": path.name, "status": DEFERRED,
                "reason": f"{path.name} changed while it was being read (still being written); it stays in "
                          f"incoming for the next run"}
    if not report["success"]:
        return _quarantine(path, content_hash, report, settings, spec)
    entry = append_batch(path, spec, settings.store(spec.name), content_hash)
    archived = archive_batch(path, settings.processed(spec.name))
    status = "ingested" if entry else "duplicate"
    log.info("%s: %s (%d rows)", path.name, status, report["rows"])
    return {"file": path.name, "status": status, "hash": content_hash, "rows": report["rows"],
            "archived": str(archived)}


def _quarantine(path: Path, content_hash: str | None, report: dict, settings: PipelineSettings,
                spec: DatasetSpec) -> dict:
    where = quarantine_batch(path, report, settings.quarantine(spec.name))
    cols = sorted({f["column"] or "table" for f in report["failures"]})
    get_run_logger().warning("%s: quarantined at %s: %s", path.name, where["quarantined_to"], report["root_cause"])
    return {"file": path.name, "status": "quarantined", "hash": content_hash, **where, "failed_columns": cols,
            "reason": report["root_cause"]}


if __name__ == "__main__":
    import argparse

    from flows.runtime import run_main

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="compas")
    args = parser.parse_args()
    run_main(lambda: print(ingest(dataset=args.dataset)))
