"""Retrain flow: h on the training store, GenRe's generator against that h, evaluation on held-out rows,
MLflow logging and registration, gates, and promotion of a passing pair to `champion`.

Retrains never overlap: each holds the retrain lock of its GENRE_HOME for its whole run (a deployment run
also has Prefect's concurrency limit of 1), and starts by reconciling what a killed run left behind
(`tasks.registry.reconcile`). The MLflow run is opened first and ends FINISHED only once all versions are registered
with their tags; `challenger` and `champion` move after that.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genre.core.classifier import Classifier

from tasks import notify
from tasks.training import commitment as promise
from tasks.faults import fault_point
from tasks.training.gates import champion_figures, check_gates
from tasks.liveness import RetrainLock
from tasks.registry.promote import gate_tags, mark_challenger, promote_pair
from tasks.registry.reconcile import reconcile
from tasks.settings import PipelineSettings
from tasks.data.specs import resolve_spec
from tasks.ledger.db import Ledger, ledger_url
from tasks.training.tracking import end_run, log_and_register, start_retrain_run, system_metrics
from tasks.training.fit import (
    evaluate_classifier,
    evaluate_recourse,
    load_run_encoder,
    snapshot_store,
    train_classifier,
    train_recourse_generator,
)

# How long a retrain waits for another one to finish before giving up (seconds; unset: no limit).
LOCK_TIMEOUT = "GENRE_RETRAIN_LOCK_TIMEOUT"


@flow(name="retrain", flow_run_name="retrain-{dataset}", on_failure=[notify.on_failure])
def retrain(dataset: str = "compas", config: str | None = None, keep_promise: bool = False) -> dict:
    """Train, evaluate, register and (if every gate passes) promote a classifier/generator pair.

    `keep_promise`: h also learns the recourse issued in the commitment window, each as a favourable row of
    weight `commitment.anchor_weight` (docs/promise.md), so that it keeps accepting what was promised."""
    log = get_run_logger()
    settings = PipelineSettings.from_env(config)
    spec = resolve_spec(dataset, settings.home)
    timeout = os.environ.get(LOCK_TIMEOUT)
    with RetrainLock(settings.home).held(timeout=float(timeout) if timeout else None, log=log):
        cleaned = reconcile(settings, holding_retrain_lock=True)
        for warning in cleaned["warnings"]:
            log.warning("%s", warning)
        snap = snapshot_store(settings.store(spec.name), spec)
        run_id = start_retrain_run(spec, snap.data_hash, settings)
        try:
            result = _train_and_register(spec, snap, run_id, settings, keep_promise)
        except BaseException:
            end_run(run_id, "FAILED", settings)
            raise
    publish_artifacts(spec.name, result, settings)
    return {**result, "reconciled": cleaned}


def publish_artifacts(dataset: str, result: dict, settings: PipelineSettings) -> None:
    """The gate table and the MLflow run's link as Prefect artifacts (a failure to publish is only a warning)."""
    from tasks.registry.client import configure_mlflow
    from tasks.run_artifacts import retrain_artifacts

    try:
        experiment = configure_mlflow(settings).get_experiment_by_name(settings.experiment)
        keys = retrain_artifacts(dataset, result, experiment.experiment_id)
    except Exception as exc:
        get_run_logger().warning("could not publish the retrain's Prefect artifacts: %r", exc)
        return
    get_run_logger().info("Prefect artifacts: %s", ", ".join(keys))


def _train_and_register(spec, snap, run_id: str, settings: PipelineSettings, keep_promise: bool = False) -> dict:
    log = get_run_logger()
    run_dir = settings.runs / f"{spec.name}-{snap.data_hash}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    log.info("training on store version %s (%d rows, %d batches)", snap.data_hash, snap.rows, snap.batches)
    issued = issued_in_window(spec.name, settings)
    anchors = write_anchors(issued, spec, run_dir, settings) if keep_promise else None
    with system_metrics(run_id, settings):  # the run's System metrics tab covers the training
        train_classifier(snap.path, spec, run_dir, settings.training, anchors)
        fault_point("during_training")
        figures = evaluate_classifier(snap.path, spec, run_dir, settings.training)
        champion = champion_figures(snap.path, spec, settings)
        commitment, report = commitment_gate(issued, run_dir, settings)

        def every_gate(figures: dict) -> list[dict]:  # the quality gates on these figures, then the commitment gate
            return check_gates(figures, champion, settings.gates) + [commitment]

        gates = every_gate(figures)
        # A pair blocked only by the commitment gate still gets its generator: a person may override the gate.
        if all(g["passed"] for g in gates if g["name"] != promise.GATE):
            train_recourse_generator(snap.path, spec, run_dir, settings.training)
            figures = evaluate_recourse(snap.path, spec, run_dir, settings.training)
            gates = every_gate(figures)
        else:
            log.warning("h failed its gates: no generator is trained against it")
    tags = gate_tags(gates) | promise.commitment_tags(commitment, report)
    versions = log_and_register(snap, spec, run_dir, settings, run_id, tags)
    mark_challenger(versions, settings)
    cv, gv = versions["classifier_version"], versions["generator_version"]
    passed = all(g["passed"] for g in gates) and gv is not None
    for g in gates:
        log.info("gate %-24s %.3f vs %.3f: %s", g["name"], g["figure"], g["threshold"], "pass" if g["passed"] else "FAIL")
        if g.get("warning"):
            log.warning("gate %s: %s", g["name"], g["warning"])
    if passed:
        promote_pair(cv, gv, snap.data_hash, settings)
        log.info("champion is now classifier v%s + generator v%s", cv, gv)
    else:
        log.warning("classifier v%s%s stays challenger", cv, f" + generator v{gv}" if gv else " (no generator)")
    if not commitment["passed"]:
        log.warning("commitment gate: classifier v%s would refuse %d of %d issued recourses (%.1f%% > %.1f%%); "
                    "report %s", cv, commitment["voided"], commitment["rescored"], 100 * commitment["figure"],
                    100 * commitment["threshold"], report)
    return {**versions, "data_hash": snap.data_hash, "store_rows": snap.rows, "figures": figures, "gates": gates,
            "champion_before": champion, "promoted": passed, "run_dir": str(run_dir), "keep_promise": keep_promise,
            "commitment_report": report}


@task(cache_policy=NO_CACHE)
def issued_in_window(dataset: str, settings: PipelineSettings):
    """The ledger's recourse of this data set issued in the commitment window."""
    ledger = Ledger(ledger_url(settings.home))
    try:
        return ledger.entries(dataset, since=promise.window_start(settings.commitment))
    finally:
        ledger.dispose()


@task(cache_policy=NO_CACHE)
def write_anchors(issued, spec, run_dir, settings: PipelineSettings):
    """The issued recourses as weighted favourable rows for h (`anchors.csv` in the run folder)."""
    rows = promise.anchor_rows(issued, spec, settings.commitment.anchor_weight)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows.to_csv(run_dir / "anchors.csv", index=False)
    get_run_logger().info("keeping the promise: %d issued recourses join h's training as favourable rows of weight %g",
                          len(rows), settings.commitment.anchor_weight)
    return run_dir / "anchors.csv"


@task(cache_policy=NO_CACHE)
def commitment_gate(issued, run_dir, settings: PipelineSettings) -> tuple[dict, str]:
    """Re-score the window's issued recourse under the challenger h of `run_dir`; the gate row and its report."""
    classifier, encoder = Classifier.load(run_dir / "classifier.pt"), load_run_encoder(run_dir)
    judged = promise.rescore(issued, classifier, encoder)  # once: the gate and its report read the same frame
    gate = promise.commitment_gate(judged, settings.commitment)
    report = promise.write_report(gate, judged, run_dir)
    return gate, report


if __name__ == "__main__":
    import argparse

    from flows.runtime import run_main

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="compas")
    parser.add_argument("--keep-promise", action="store_true",
                        help="h also learns the issued recourse as weighted favourable rows (docs/promise.md)")
    args = parser.parse_args()
    run_main(lambda: print(retrain(dataset=args.dataset, keep_promise=args.keep_promise)))
