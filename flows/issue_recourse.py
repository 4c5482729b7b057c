"""Batch recourse: score a CSV of applicants with the champion h, give recourse to those it rejects, and
record each issued recourse in the ledger.

    python -m flows.issue_recourse applicants.csv --dataset compas --out results.csv
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger

from genre.core.classifier import rejected_indices
from tasks.ledger.db import ledger_url
from tasks.serving.batch import (
    generate_recourse,
    has_id_column,
    ledger_entries,
    load_champion_pair,
    new_batch_id,
    read_applicants,
    record_recourse,
    results_table,
    score_applicants,
    whole_as_integers,
    write_results,
)
from tasks.registry.reconcile import reconcile
from tasks.settings import PIPELINE_SELECT_RULES, PipelineSettings
from tasks.data.specs import resolve_spec


@flow(name="issue-recourse", flow_run_name="issue-recourse-{dataset}")
def issue_recourse(
    applicants: str,
    dataset: str = "compas",
    out: str | None = None,
    k: int | None = None,
    temperature: float | None = None,
    select: str | None = None,
    seed: int = 0,
) -> dict:
    """Recourse for every applicant with h(x) <= 0.5, recorded in the ledger; returns a summary.

    The results CSV (default: beside the input, `<name>.recourse.csv`) has one row per applicant: id,
    status (accepted / recourse_issued / no_valid_recourse), h(x), the factual, the recourse
    (`recourse.<feature>`), its cost and h(x+), and the ledger id. Only recourse the champion accepts is
    issued and recorded. k, temperature and select default to the pipeline config's training section
    (the figures the promotion gates judged).
    """
    log = get_run_logger()
    settings = PipelineSettings.from_env()
    spec = resolve_spec(dataset, settings.home)
    path = Path(applicants)
    for warning in reconcile(settings)["warnings"]:
        log.warning("%s", warning)
    pair = load_champion_pair(spec.name)
    table, ids = read_applicants(path, spec)
    score = score_applicants(pair, table)
    rejected = rejected_indices(score)
    log.info("%d applicants, %d rejected by classifier v%s", len(table), len(rejected), pair.classifier_version)
    batch = generate_recourse(
        pair, table, rejected, seed=seed,
        k=k or settings.training.k,
        temperature=settings.training.temperature if temperature is None else temperature,
        select=select or settings.training.select,
    )
    issued = ledger_entries(pair, spec, table, ids, score, batch, real_ids=has_id_column(path))
    ledger_ids = record_recourse(ledger_url(settings.home), issued, new_batch_id(path)) if issued else []
    results = results_table(ids, whole_as_integers(table, pair.encoder), score, batch, ledger_ids)
    out_path = write_results(results, Path(out) if out else path.with_suffix(".recourse.csv"))
    summary = {
        "applicants": len(table),
        "rejected": len(rejected),
        "issued": len(issued),
        "no_valid_recourse": len(rejected) - len(issued),
        "mean_cost": float(np.mean([i.cost for i in issued])) if issued else None,
        "classifier_version": pair.classifier_version,
        "generator_version": pair.generator_version,
        "ledger_ids": ledger_ids,
        "results": str(out_path),
    }
    log.info("issued %d recourses (%d rejected without a valid one); results in %s",
             summary["issued"], summary["no_valid_recourse"], out_path)
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
                                              select=args.select, seed=args.seed))
    print(json.dumps({k: v for k, v in summary.items() if k != "ledger_ids"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
