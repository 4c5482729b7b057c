"""Prefect tasks for monitoring a new champion: claim the version, build the reports, log them, finish."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from genre.core.classifier import Classifier
from genre.core.datasets import DatasetSpec
from genre.core.encoding import MinMaxEncoder
from monitoring import export, inputs
from monitoring.reports import (
    RecourseThresholds,
    build_data_drift_report,
    build_prediction_drift_report,
    build_recourse_report,
    recourse_frame,
)
from tasks.ledger.db import Ledger
from tasks.liveness import OWNER_TAG, owner_tag
from tasks.retry import transient_only
from tasks.settings import is_remote

MONITOR_EXPERIMENT = "genre-monitoring"


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def claim_version(ledger_url: str, model_name: str, version: str) -> bool:
    """Claim a classifier version for monitoring; False if it was monitored (or is being monitored) already."""
    return _with_ledger(ledger_url, lambda ledger: ledger.claim(model_name, version))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def release_version(ledger_url: str, model_name: str, version: str) -> None:
    """Give an unfinished claim back so that the next poll retries the version."""
    _with_ledger(ledger_url, lambda ledger: ledger.release(model_name, version))


@task(cache_policy=NO_CACHE)
def previous_version(ledger_url: str, model_name: str, dataset: str) -> str | None:
    """The classifier version of this data set monitored last: the previous champion the reports compare with."""
    return _with_ledger(ledger_url, lambda ledger: ledger.last_monitored(model_name, dataset))


@task(cache_policy=NO_CACHE)
def validity_history(ledger_url: str, model_name: str, dataset: str) -> pd.DataFrame:
    """Ledger validity of every earlier monitoring run of a data set (for the plot)."""
    return _with_ledger(ledger_url, lambda ledger: ledger.validity_history(model_name, dataset))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def finish_version(ledger_url: str, model_name: str, version: str, dataset: str, report_dir: str,
                   run_id: str | None, validity: dict[str, tuple[int, float]]) -> None:
    """Mark the version monitored, with its ledger validity by issuing version."""
    _with_ledger(ledger_url, lambda ledger: ledger.finish(
        model_name, version, report_dir=report_dir, mlflow_run_id=run_id, validity=validity, dataset=dataset))


@task(cache_policy=NO_CACHE)
def fixed_audit_set(spec: DatasetSpec, path: Path) -> pd.DataFrame:
    """The audit rows every version is judged on (drawn once from the test split, then kept)."""
    return inputs.audit_set(spec, path)


@task(cache_policy=NO_CACHE)
def data_drift(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec, out_dir: Path) -> dict:
    """Data-drift report between two training tables; returns its figures and file paths."""
    snapshot = build_data_drift_report(reference=reference, current=current, spec=spec)
    return export.drift_summary(snapshot) | {"files": export.save_report(snapshot, out_dir, "data_drift")}


@task(cache_policy=NO_CACHE)
def prediction_drift(old: tuple[Classifier, MinMaxEncoder], new: tuple[Classifier, MinMaxEncoder],
                     audit: pd.DataFrame, out_dir: Path) -> dict:
    """h_old vs h_new scores on the audit rows; returns the figures and file paths."""
    snapshot = build_prediction_drift_report(reference=inputs.scores(*old, audit), current=inputs.scores(*new, audit))
    return export.prediction_summary(snapshot) | {"files": export.save_report(snapshot, out_dir, "prediction_drift")}


@task(cache_policy=NO_CACHE)
def audit_recourse(genre, new: tuple[Classifier, MinMaxEncoder], train: pd.DataFrame, audit: pd.DataFrame,
                   out_dir: Path, sampling: dict) -> pd.DataFrame:
    """The champion generator's recourse on the audit rows, judged by the champion; kept as CSV for the next run."""
    classifier, encoder = new
    plausibility = inputs.plausibility_scorer(classifier, encoder, train)
    frame = inputs.audit_recourse(genre, classifier, encoder, audit, plausibility, **sampling)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "audit_recourse.csv", index=False)
    return frame


@task(cache_policy=NO_CACHE)
def recourse_report(reference: pd.DataFrame | None, audit_frame: pd.DataFrame, judged: pd.DataFrame,
                    thresholds: RecourseThresholds, out_dir: Path) -> dict:
    """Recourse report (validity, cost, plausibility, ledger still valid by version); figures and paths."""
    current = audit_frame
    if len(judged):
        ledger_rows = recourse_frame(issued_by=judged["issued_by"].to_numpy(),
                                    still_valid=judged["still_valid"].to_numpy())
        current = pd.concat([audit_frame, ledger_rows], ignore_index=True)
    snapshot = build_recourse_report(reference=reference, current=current, thresholds=thresholds)
    return export.recourse_summary(snapshot) | {"files": export.save_report(snapshot, out_dir, "recourse")}


@task(cache_policy=NO_CACHE)
def previous_audit_recourse(report_dir: str | None) -> pd.DataFrame | None:
    """The previous champion's audit recourse frame, if its monitoring run left one."""
    path = Path(report_dir) / "audit_recourse.csv" if report_dir else None
    return pd.read_csv(path, keep_default_na=True) if path is not None and path.exists() else None


@task(cache_policy=NO_CACHE)
def plot_validity(history: pd.DataFrame, version: str, validity: dict[str, tuple[int, float]], out_dir: Path) -> str:
    """PNG of ledger validity over the monitored classifier versions, this one included."""
    now = pd.DataFrame([{"monitored_version": str(version), "issued_by": by, "n": n, "still_valid": share}
                        for by, (n, share) in validity.items()], columns=history.columns)
    frames = [f for f in (history, now) if len(f)]  # concat of an empty frame is deprecated in pandas
    together = pd.concat(frames, ignore_index=True) if frames else history
    return export.plot_ledger_validity(together, out_dir / "ledger_validity.png")


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def log_monitoring_run(tracking_uri: str, artifact_root: Path, summary: dict, out_dir: Path) -> str:
    """Log the reports, the plot and the headline figures to MLflow; returns the run id."""
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    if client.get_experiment_by_name(MONITOR_EXPERIMENT) is None:
        try:
            # Artifacts under GENRE_HOME beside the pipeline's, never in a ./mlruns of the working directory;
            # a tracking server (`make up`) keeps them itself (proxied artifacts).
            location = None if is_remote(tracking_uri) else Path(artifact_root).resolve().as_uri()
            client.create_experiment(MONITOR_EXPERIMENT, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by another process
    mlflow.set_experiment(MONITOR_EXPERIMENT)
    metrics = {
        "drift_share": (summary.get("data_drift") or {}).get("drift_share"),
        "decision_flip_share": (summary.get("prediction_drift") or {}).get("decision_flip_share"),
        "recourse_validity": summary["recourse"].get("validity"),
        "recourse_cost": summary["recourse"].get("cost"),
        "recourse_plausibility": summary["recourse"].get("plausibility"),
        "ledger_still_valid": summary["recourse"].get("ledger_still_valid"),
    } | {f"ledger_still_valid_v{v}": s for v, s in summary["recourse"]["ledger_still_valid_by_version"].items()}
    with mlflow.start_run(run_name=f"monitor-v{summary['classifier_version']}") as run:
        mlflow.set_tags({
            "kind": "monitoring", "dataset": summary["dataset"],
            "classifier_version": summary["classifier_version"], "generator_version": summary["generator_version"],
            "previous_classifier_version": summary["previous_version"] or "none", OWNER_TAG: owner_tag(),
        })
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        mlflow.log_artifacts(str(out_dir), artifact_path="monitoring")
        return run.info.run_id


def _with_ledger(url: str, action):
    ledger = Ledger(url)
    try:
        return action(ledger)
    finally:
        ledger.dispose()
