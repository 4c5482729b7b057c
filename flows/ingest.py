"""Ingest flow: every CSV in the incoming folder is checked against the data contract, then either
appended to the versioned training store or moved to quarantine with its validation result."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from data_contracts.suite import suite_path
from genre.datasets import get_spec
from tasks.ingest import append_batch, archive_batch, check_batch, hash_batch, list_batches, quarantine_batch
from tasks.settings import PipelineSettings
from tasks.store import is_ingested


@flow(name="ingest", flow_run_name="ingest-{dataset}")
def ingest(dataset: str = "compas", incoming: str | None = None, config: str | None = None) -> list[dict]:
    """Validate each incoming batch; pass -> store, fail -> quarantine, seen before -> no-op."""
    log = get_run_logger()
    settings = PipelineSettings.from_env(config)
    spec = get_spec(dataset)
    store_dir = settings.store(spec.name)
    outcomes = []
    for path in list_batches(Path(incoming) if incoming else settings.incoming(spec.name)):
        content_hash = hash_batch(path)
        if is_ingested(store_dir, content_hash):
            archived = archive_batch(path, settings.processed(spec.name))
            log.info("%s: content %s already in the store, nothing appended", path.name, content_hash[:16])
            outcomes.append({"file": path.name, "status": "duplicate", "hash": content_hash, "archived": str(archived)})
            continue
        report = check_batch(path, spec, suite_path(spec.name))
        if not report["success"]:
            where = quarantine_batch(path, report, settings.quarantine(spec.name))
            cols = sorted({f["column"] or "table" for f in report["failures"]})
            log.warning("%s: failed its contract on %s; quarantined at %s", path.name, cols, where["quarantined_to"])
            outcomes.append({"file": path.name, "status": "quarantined", "hash": content_hash, **where,
                             "failed_columns": cols})
            continue
        entry = append_batch(path, spec, store_dir, content_hash)
        archived = archive_batch(path, settings.processed(spec.name))
        status = "ingested" if entry else "duplicate"
        log.info("%s: %s (%d rows)", path.name, status, report["rows"])
        outcomes.append({"file": path.name, "status": status, "hash": content_hash, "rows": report["rows"],
                         "archived": str(archived)})
    return outcomes


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="compas")
    args = parser.parse_args()
    print(ingest(dataset=args.dataset))
