"""Batch recourse: score a file of applicants (CSV or Parquet) with the champion h, give recourse to those it
rejects, and record each issued recourse in the ledger; in partitions, in this process or on Dask.

    python -m flows.issue_recourse applicants.csv --dataset compas --out results.csv [--cluster local --workers 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import engine
from tasks.ledger.db import ledger_url
from tasks.registry.reconcile import reconcile
from tasks.retry import PermanentError
from tasks.serving import partitions as batch
from tasks.serving.batch import load_champion_pair, new_batch_id, whole_as_integers
from tasks.serving.partitions import Job
from tasks.settings import PIPELINE_SELECT_RULES, PipelineSettings
from tasks.data.specs import resolve_spec


@task(cache_policy=NO_CACHE)
def answer_partition(job: Job, part: str) -> dict:
    """Recourse for one partition of applicants (see `tasks.serving.partitions`); runs where the engine puts it."""
    return batch.answer_partition(job, Path(part))


@flow(name="issue-recourse", flow_run_name="issue-recourse-{dataset}")
def issue_recourse(
    applicants: str,
    dataset: str = "compas",
    out: str | None = None,
    k: int | None = None,
    temperature: float | None = None,
    select: str | None = None,
    seed: int = 0,
    partition_rows: int = batch.PARTITION_ROWS,
    cluster: str | None = None,
    workers: int | None = None,
) -> dict:
    """Recourse for every applicant with h(x) <= 0.5, recorded in the ledger; returns a summary.

    `applicants` is a CSV or Parquet file of the data set's features (an optional `applicant_id` column).
    The results file (default: beside the input, `<name>.recourse.csv`; Parquet when `out` ends in
    .parquet) has one row per applicant: id, status (accepted / recourse_issued / no_valid_recourse), h(x),
    the factual, the recourse (`recourse.<feature>`), its cost and h(x+), and the ledger id. Only recourse
    the champion accepts is issued and recorded. k, temperature and select default to the pipeline config's
    training section (the figures the promotion gates judged).

    The file is checked whole first (a bad cell fails the run naming file, row and column, before anything
    is written), then answered in partitions of `partition_rows` (rounded up to whole blocks of
    `tasks.serving.partitions.BLOCK_ROWS`) on `cluster` (`tasks.engine`: None in this
    process, "local" a Dask LocalCluster of `workers` processes, or a scheduler address); each partition's
    recourse goes to the ledger in one transaction. If any partition fails, the batch's ledger rows are
    removed again and the run fails: no results file, no half-recorded batch. The answers do not depend on
    the partitioning or the engine (per-row seeds).
    """
    log = get_run_logger()
    settings = PipelineSettings.from_env()
    spec = resolve_spec(dataset, settings.home)
    path = Path(applicants).expanduser().resolve()
    if not path.is_file():
        raise PermanentError(f"applicants file not found: {path}")
    partition_rows = batch.partition_size(partition_rows)  # whole blocks of BLOCK_ROWS
    cluster, workers = engine.default_cluster(cluster), engine.default_workers(workers)
    for warning in reconcile(settings)["warnings"]:
        log.warning("%s", warning)
    pair = load_champion_pair(spec.name)
    started = time.monotonic()
    table, ids, real_ids = batch.read_applicants_file(path, spec)
    shown = whole_as_integers(table, pair.encoder)
    batch_id = new_batch_id(path)
    job = Job(dataset=spec.name, classifier_version=pair.classifier_version, generator_version=pair.generator_version,
              tracking_uri=settings.mlflow_uri, ledger_url=ledger_url(settings.home), batch_id=batch_id,
              k=k or settings.training.k, temperature=settings.training.temperature if temperature is None else temperature,
              select=select or settings.training.select, seed=seed,
              whole_columns=tuple(c for c in table.columns if shown[c].dtype != table[c].dtype), real_ids=real_ids)
    batch.remember(job, pair)
    folder = settings.home / "batches" / batch_id
    parts = batch.write_partitions(table, ids, folder, partition_rows)
    log.info("%d applicants checked and cut into %d partition(s) of <= %d rows (%.1f s); engine: %s",
             len(table), len(parts), partition_rows, time.monotonic() - started,
             f"Dask {cluster} ({workers} workers)" if cluster == "local" else (cluster or "this process"))
    answered = time.monotonic()
    try:
        done = engine.map_partitions(answer_partition, [(job, str(p)) for p in parts], cluster, workers,
                                     "issue-recourse")
        seconds = time.monotonic() - answered
        out_path = batch.join_results([d["part"] for d in done], Path(out) if out else path.with_suffix(".recourse.csv"))
    except BaseException:
        removed = batch.discard(job, folder)
        log.error("batch %s failed: its %d ledger row(s) were removed again; nothing was issued", batch_id, removed)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    issued = sum(d["issued"] for d in done)
    rejected = sum(d["rejected"] for d in done)
    summary = {
        "applicants": len(table),
        "rejected": rejected,
        "issued": issued,
        "no_valid_recourse": rejected - issued,
        "mean_cost": sum(d["cost_sum"] for d in done) / issued if issued else None,
        "classifier_version": pair.classifier_version,
        "generator_version": pair.generator_version,
        "batch_id": batch_id,
        "ledger_ids": [i for d in done for i in d["ledger_ids"]],  # in input order
        "partitions": len(parts),
        "engine": cluster or "in-process",
        "workers": workers if cluster == "local" else None,
        "answer_seconds": round(seconds, 2),
        "rows_per_second": round(len(table) / seconds, 1) if seconds > 0 else None,
        "total_seconds": round(time.monotonic() - started, 2),
        # Seconds the partitions themselves took, summed (the first one includes loading the pair on its worker).
        "partition_seconds": round(sum(d["seconds"] for d in done), 2),
        "results": str(out_path),
    }
    log.info("issued %d recourses (%d rejected without a valid one) to %d applicants in %.1f s (%.0f rows/s); "
             "results in %s", issued, summary["no_valid_recourse"], len(table), seconds, summary["rows_per_second"] or 0,
             out_path)
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `genre issue-recourse` (and `python -m flows.issue_recourse`)."""
    parser.add_argument("applicants", help="CSV of applicants: the data set's feature columns (an optional "
                        "applicant_id names each row in the ledger)")
    parser.add_argument("--dataset", default="compas", help="built-in name or spec file the champion was trained on")
    parser.add_argument("--out", help="results CSV (default: beside the applicants, <name>.recourse.csv)")
    parser.add_argument("--select", choices=PIPELINE_SELECT_RULES,
                        help="selection rule (default: the pipeline config's training.select)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    parser.add_argument("--partition-rows", type=int, default=batch.PARTITION_ROWS, help="rows per partition")
    parser.add_argument("--cluster", default=None, help="'local' (a Dask LocalCluster) or tcp://scheduler:8786 "
                        "(default: GENRE_DASK_CLUSTER, else this process)")
    parser.add_argument("--workers", type=int, default=None,
                        help="LocalCluster workers (default GENRE_DASK_WORKERS or 2)")


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Issue recourse from the champion pair (the Prefect flow, on a temporary server that cannot outlive it)."""
    if not isinstance(args, argparse.Namespace):
        from genre.cli.main import HelpFormatter

        parser = argparse.ArgumentParser(description="Issue recourse to a batch of applicants (a CSV).",
                                         formatter_class=HelpFormatter)
        configure(parser)
        args = parser.parse_args(args)
    from flows.runtime import run_main

    summary = run_main(lambda: issue_recourse(args.applicants, dataset=args.dataset, out=args.out,
                                              select=args.select, seed=args.seed, partition_rows=args.partition_rows,
                                              cluster=args.cluster, workers=args.workers))
    print(json.dumps({k: v for k, v in summary.items() if k != "ledger_ids"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
