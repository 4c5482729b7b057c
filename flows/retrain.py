"""Retrain flow: h on the training store, GenRe's generator against that h, evaluation on held-out rows,
MLflow logging and registration as `challenger`, gates, and promotion of a passing pair to `champion`."""
from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, get_run_logger

from genre.datasets import get_spec
from tasks.gates import champion_figures, check_gates
from tasks.promote import promote_pair, tag_gates
from tasks.settings import PipelineSettings
from tasks.tracking import log_and_register
from tasks.training import (
    evaluate_classifier,
    evaluate_recourse,
    snapshot_store,
    train_classifier,
    train_recourse_generator,
)


@flow(name="retrain", flow_run_name="retrain-{dataset}")
def retrain(dataset: str = "compas", config: str | None = None) -> dict:
    """Train, evaluate, register and (if every gate passes) promote a classifier/generator pair."""
    log = get_run_logger()
    settings = PipelineSettings.from_env(config)
    spec = get_spec(dataset)
    snap = snapshot_store(settings.store(spec.name), spec)
    run_dir = settings.runs / f"{spec.name}-{snap.data_hash}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    log.info("training on store version %s (%d rows, %d batches)", snap.data_hash, snap.rows, snap.batches)
    train_classifier(snap.path, spec, run_dir, settings.training)
    figures = evaluate_classifier(snap.path, spec, run_dir, settings.training)
    champion = champion_figures(snap.path, spec, settings)
    gates = check_gates(figures, champion, settings.gates)
    if all(g["passed"] for g in gates):
        train_recourse_generator(snap.path, spec, run_dir, settings.training)
        figures = evaluate_recourse(snap.path, spec, run_dir, settings.training)
        gates = check_gates(figures, champion, settings.gates)
    else:
        log.warning("h failed its gates: no generator is trained against it")
    versions = log_and_register(snap, spec, run_dir, settings)
    cv, gv = versions["classifier_version"], versions["generator_version"]
    passed = tag_gates(cv, gv, gates, settings) and gv is not None
    for g in gates:
        log.info("gate %-24s %.3f vs %.3f: %s", g["name"], g["figure"], g["threshold"], "pass" if g["passed"] else "FAIL")
    if passed:
        promote_pair(cv, gv, snap.data_hash, settings)
        log.info("champion is now classifier v%s + generator v%s", cv, gv)
    else:
        log.warning("classifier v%s%s stays challenger", cv, f" + generator v{gv}" if gv else " (no generator)")
    return {**versions, "data_hash": snap.data_hash, "store_rows": snap.rows, "figures": figures, "gates": gates,
            "champion_before": champion, "promoted": passed, "run_dir": str(run_dir)}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="compas")
    args = parser.parse_args()
    print(retrain(dataset=args.dataset))
