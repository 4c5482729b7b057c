"""Monitor each new champion once: data drift, prediction drift and recourse (audit set and ledger).

Two entries: `poll_champion` reads the registry's `champion` alias (so an alias moved by hand in the MLflow UI
is caught on the next poll); `monitor(version)` is what the promotion event triggers. A version is claimed in
the ledger database before any work, so it is monitored exactly once however often either entry runs.
Reports land in `GENRE_HOME/reports/<version>/` (HTML + JSON) and in an MLflow run of `genre-monitoring`.

    python -m flows.monitor            # poll
    python -m flows.monitor --version 3
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from monitoring.export import write_json
from monitoring.inputs import validity_by_version
from monitoring.reports import RecourseThresholds
from tasks import engine, notify
from tasks.ledger.db import Ledger, ledger_url
from tasks.monitoring import champion as mon
from tasks.monitoring import ledger_rescore as rescore
from tasks.registry import client as registry
from tasks.registry.reconcile import reconcile
from tasks.retry import transient_only
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PipelineSettings


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def champion_classifier(settings: PipelineSettings) -> str | None:
    """The classifier version under the `champion` alias (None before the first promotion)."""
    version = registry.champion_versions(settings)[0]
    return None if version is None else str(version)  # MLflow may hand back an int


@task(cache_policy=NO_CACHE)
def reconcile_registry(settings: PipelineSettings) -> list[str]:
    """Clean up after killed runs and realign the champion aliases; the warnings to raise."""
    return reconcile(settings)["warnings"]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def paired_generator(classifier_version: str, settings: PipelineSettings) -> tuple[str, list[str]]:
    """The generator judged with a classifier version, and the warnings its resolution raised.

    For the champion classifier this is `registry.resolve_champion`'s generator, the one serving and batch
    recourse use; for another version, the newest complete generator tagged with it. Never the generator
    alias alone: an alias moved by hand may leave it paired with another classifier.
    """
    champion = registry.resolve_champion(settings)
    if champion.classifier_version == str(classifier_version):
        return champion.generator_version, champion.warnings
    paired = registry.paired_generators(classifier_version, settings)
    if not paired:
        raise registry.MixedChampion(f"no complete {GENERATOR_MODEL} version is tagged "
                                     f"classifier_version={classifier_version}: nothing to judge it with")
    return paired[-1], champion.warnings


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def load_classifier(version: str, settings: PipelineSettings):
    """h and its encoder of a registered classifier version."""
    return registry.load_classifier_version(version, settings)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def load_generator(version: str, settings: PipelineSettings):
    """The GenRe of a registered generator version."""
    return registry.load_generator_version(version, settings)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def training_table(version: str, settings: PipelineSettings):
    """The training snapshot a classifier version learned from."""
    return registry.training_data_for(version, settings)


@task(cache_policy=NO_CACHE)
def dataset_of(version: str, settings: PipelineSettings) -> str:
    """The data set a classifier version was trained on (its `dataset` tag)."""
    return registry.version_tags(CLASSIFIER_MODEL, version, settings)["dataset"]


@task(cache_policy=NO_CACHE)
def report_dir_of(url: str, version: str | None) -> str | None:
    """Where an earlier monitoring run of `version` wrote its reports."""
    if version is None:
        return None
    ledger = Ledger(url)
    try:
        done = ledger.monitored(CLASSIFIER_MODEL)
    finally:
        ledger.dispose()
    rows = done[done["version"] == str(version)]
    return None if rows.empty else rows["report_dir"].iloc[-1]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def tag_version(version: str, summary: dict, settings: PipelineSettings) -> None:
    """Point the classifier version at its monitoring run and headline figures (seen in the MLflow UI)."""
    figures = {
        "monitoring.run_id": summary["mlflow_run_id"],
        "monitoring.report_dir": summary["report_dir"],
        "monitoring.drift_share": (summary["data_drift"] or {}).get("drift_share", "n/a (first champion)"),
        "monitoring.ledger_still_valid": summary["recourse"].get("ledger_still_valid", "n/a (empty ledger)"),
        "monitoring.failed_tests": len(summary["recourse"]["failed_tests"]),
    }
    registry.set_tags(CLASSIFIER_MODEL, version, figures, settings)


@flow(name="monitor-poll", on_failure=[notify.on_failure])
def poll_champion() -> dict:
    """Monitor the registry's champion classifier if it has not been monitored yet."""
    settings = PipelineSettings.from_env()
    version = champion_classifier(settings)  # the source of truth; `monitor` reconciles the rest
    if version is None:
        get_run_logger().info("no %s@champion in %s yet: nothing to monitor", CLASSIFIER_MODEL, settings.mlflow_uri)
        return {"status": "no_champion"}
    return monitor(version=version)


@flow(name="monitor", flow_run_name="monitor-v{version}", on_failure=[notify.on_failure])
def monitor(version: str | None = None, cluster: str | None = None, workers: int | None = None,
            partition_rows: int = rescore.PARTITION_ROWS) -> dict:
    """Monitor one classifier version (the champion when `version` is None), once. The ledger is re-judged in
    partitions of `partition_rows` on `cluster` (`tasks.engine`: None in this process, "local" a Dask
    LocalCluster of `workers` processes, or a scheduler address; default GENRE_DASK_CLUSTER)."""
    if version is None:
        get_run_logger().info("no version given: polling the registry's champion")
        result = poll_champion()
        if result.get("status") == "no_champion":
            get_run_logger().info("no champion yet: nothing was monitored")
        return result
    engine_options = (engine.default_cluster(cluster), engine.default_workers(workers), partition_rows)
    version = str(version)
    log = get_run_logger()
    settings = PipelineSettings.from_env()
    url = ledger_url(settings.home)
    # A mismatched champion pair (an alias moved by hand, a promotion cut short) is warned about here, and
    # realigned the way serving and batch recourse resolve it.
    warnings = reconcile_registry(settings)
    generator_version, resolved = paired_generator(version, settings)
    warnings += [w for w in resolved if w not in warnings]
    for warning in warnings:
        log.warning("%s", warning)
    if not mon.claim_version(url, CLASSIFIER_MODEL, version):
        log.info("classifier v%s was monitored already: nothing to do", version)
        return {"status": "already_monitored", "classifier_version": version, "generator_version": generator_version,
                "warnings": warnings}
    try:
        summary = _monitor_claimed(version, generator_version, warnings, settings, url, engine_options)
    except BaseException:
        mon.release_version(url, CLASSIFIER_MODEL, version)
        raise
    log.info("monitored classifier v%s: %s", version, json.dumps(_headline(summary)))
    _alert_and_publish(summary, settings)
    return summary


def _alert_and_publish(summary: dict, settings: PipelineSettings) -> None:
    """Say the drift headline, alert through the notification block when anything drifted or a recourse test
    failed, and publish the Prefect artifacts (markdown headline, links to the reports and the MLflow run)."""
    log = get_run_logger()
    drift, pred = summary["data_drift"] or {}, summary["prediction_drift"] or {}
    failed = summary["recourse"].get("failed_tests") or []
    lines = [drift.get("headline") or "Data drift: no previous champion to compare with"]
    if pred:
        lines.append(f"Prediction drift: {pred.get('decision_flip_share', 0):.1%} of audit decisions flipped; "
                     f"h's probability {'DRIFTED' if pred.get('h_drifted') else 'did not drift'}")
    lines.append(f"Recourse: {len(failed)} failed test(s)" + (f": {'; '.join(failed)}" if failed else ""))
    headline = ". ".join(lines)
    summary["headline"] = headline
    (log.warning if drift.get("drifted_count") or pred.get("h_drifted") or failed else log.info)("%s", headline)
    versions = (f"classifier v{summary['classifier_version']} vs v{summary['previous_version']}"
                if summary["previous_version"] else f"classifier v{summary['classifier_version']} (first champion)")
    if drift.get("drifted_count") or pred.get("h_drifted"):
        notify.send(notify.DRIFT, f"{summary['dataset']}: {versions}", headline + f"\nreports: {summary['report_dir']}")
    elif failed:
        notify.send(notify.RECOURSE, f"{summary['dataset']}: {versions}", headline + f"\nreports: {summary['report_dir']}")
    try:
        from tasks.run_artifacts import monitoring_artifacts

        experiment = mlflow_experiment_id(settings)
        keys = monitoring_artifacts(summary, headline, experiment)
        log.info("Prefect artifacts: %s and %d link(s)", keys[0], len(keys) - 1)
    except Exception as exc:
        log.warning("could not publish the monitoring run's Prefect artifacts: %r", exc)


def mlflow_experiment_id(settings: PipelineSettings) -> str | None:
    experiment = registry.configure_mlflow(settings).get_experiment_by_name(mon.MONITOR_EXPERIMENT)
    return experiment.experiment_id if experiment else None


def _monitor_claimed(version: str, generator_version: str, warnings: list[str], settings: PipelineSettings,
                     url: str, engine_options: tuple) -> dict:
    from tasks.data.specs import resolve_spec

    spec = resolve_spec(dataset_of(version, settings), settings.home)
    out_dir = settings.reports / version
    previous = mon.previous_version(url, CLASSIFIER_MODEL, spec.name)
    new = load_classifier(version, settings)
    train_new = training_table(version, settings)
    audit = mon.fixed_audit_set(spec, settings.reports / f"audit-{spec.name}.csv")
    summary: dict = {
        "status": "monitored", "dataset": spec.name, "classifier_version": version,
        "generator_version": generator_version, "previous_version": previous,
        "data_drift": None, "prediction_drift": None, "warnings": warnings,
    }
    label = mon.version_label(CLASSIFIER_MODEL, version, settings.mlflow_uri)
    if previous is not None:
        compared = (label, mon.version_label(CLASSIFIER_MODEL, previous, settings.mlflow_uri))
        summary["data_drift"] = mon.data_drift(training_table(previous, settings), train_new, spec, out_dir, compared)
        summary["prediction_drift"] = mon.prediction_drift(load_classifier(previous, settings), new, audit, out_dir,
                                                           compared)
    t = settings.training
    audit_frame = mon.audit_recourse(
        load_generator(generator_version, settings), new, train_new, audit, out_dir,
        {"n": t.n_factuals, "k": t.k, "temperature": t.temperature, "select": t.select, "seed": t.seed},
    )
    cluster, workers, rows = engine_options
    judged = rescore.rescore_ledger(rescore.Rescore(url, spec.name, version, settings.mlflow_uri), new, cluster, workers,
                                    rows)
    validity = validity_by_version(judged)
    thresholds = RecourseThresholds(validity=settings.gates.validity_h_floor,
                                    plausibility=settings.gates.plausibility_floor)
    title = (f"Recourse quality: generator v{generator_version} with {label}"
             + (f" vs classifier v{previous}'s pair" if previous is not None else " (first champion)"))
    summary["recourse"] = mon.recourse_report(
        mon.previous_audit_recourse(report_dir_of(url, previous)), audit_frame, judged, thresholds, out_dir, title
    )
    summary["ledger_validity"] = {v: {"n": n, "still_valid": share} for v, (n, share) in validity.items()}
    history = mon.validity_history(url, CLASSIFIER_MODEL, spec.name)
    summary["plot"] = mon.plot_validity(history, version, validity, out_dir)
    summary["validity_over_time"] = mon.validity_over_time_report(history, version, validity, out_dir,
                                                                  1.0 - settings.commitment.max_voided)
    summary["commitment_override"] = mon.override_of_version(url, version)
    if summary["commitment_override"]:
        o = summary["commitment_override"]
        get_run_logger().warning("classifier v%s was promoted past the commitment gate by %s (%s): %d of %d issued "
                                 "recourses voided", version, o["by"], o["reason"], o["voided"], o["rescored"])
    summary["thresholds"] = asdict(thresholds)
    summary["report_dir"] = str(out_dir)
    write_json(summary, out_dir / "summary.json")
    summary["mlflow_run_id"] = mon.log_monitoring_run(settings.mlflow_uri, settings.artifact_root, summary, out_dir)
    summary["validity_over_time"]["mlflow_run_id"] = mon.log_validity_over_time(
        settings.mlflow_uri, settings.artifact_root, spec.name, version, validity)
    tag_version(version, summary, settings)
    mon.finish_version(url, CLASSIFIER_MODEL, version, spec.name, str(out_dir), summary["mlflow_run_id"], validity)
    return summary


def _headline(summary: dict) -> dict:
    return {
        "previous": summary["previous_version"],
        "drift_share": (summary["data_drift"] or {}).get("drift_share"),
        "decision_flip_share": (summary["prediction_drift"] or {}).get("decision_flip_share"),
        "recourse_validity": summary["recourse"].get("validity"),
        "ledger_still_valid": summary["recourse"].get("ledger_still_valid"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Monitor the champion classifier (once per version).")
    parser.add_argument("--version", help="a classifier version (default: poll the registry's champion)")
    args = parser.parse_args(argv)
    print(json.dumps(monitor(version=args.version), indent=1, default=str))


if __name__ == "__main__":
    from flows.runtime import run_main

    run_main(main)
