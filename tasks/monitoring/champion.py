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
    build_validity_over_time_report,
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


@task(cache_policy=NO_CACHE)
def override_of_version(ledger_url: str, version: str) -> dict | None:
    """The recorded commitment override that promoted this classifier version (the latest), or None."""
    found = _with_ledger(ledger_url, lambda ledger: ledger.overrides(version))
    if found.empty:
        return None
    row = found.iloc[-1]
    return {"by": row["by"], "reason": row["reason"], "at": str(row["at"]), "voided": int(row["voided"]),
            "rescored": int(row["rescored"]), "voided_share": float(row["voided_share"]),
            "affected_ids": list(row["affected_ids"])}


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


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def version_label(model: str, version: str, tracking_uri: str) -> str:
    """"classifier v3 (store 1a2b3c, 4620 rows, registered 2026-11-29 20:31 UTC)": what a report compares."""
    from datetime import datetime, timezone

    v = mlflow.MlflowClient(tracking_uri, tracking_uri).get_model_version(model, str(version))
    when = datetime.fromtimestamp(v.creation_timestamp / 1000, tz=timezone.utc)
    rows = f", {v.tags['store_rows']} rows" if "store_rows" in v.tags else ""
    return f"{model.removeprefix('genre-')} v{version} (store {v.tags.get('data_hash', '?')}{rows}, " \
           f"registered {when:%Y-%m-%d %H:%M} UTC)"


def _made() -> str:
    from datetime import datetime, timezone

    return f"report made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


@task(cache_policy=NO_CACHE)
def data_drift(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec, out_dir: Path,
               compared: tuple[str, str] = ("current", "reference")) -> dict:
    """Data-drift report between two training tables (`compared`: their labels, current first); figures and paths."""
    title = f"Data drift: training data of {compared[0]} vs {compared[1]}"
    snapshot = build_data_drift_report(reference=reference, current=current, spec=spec, name=title)
    summary = export.drift_summary(snapshot)
    files = export.save_report(snapshot, out_dir, "data_drift", title=title,
                               subtitle=f"{summary['headline']}. Reference: the training snapshot of {compared[1]}; "
                                        f"current: that of {compared[0]}; {_made()}.")
    return summary | {"files": files, "title": title}


@task(cache_policy=NO_CACHE)
def prediction_drift(old: tuple[Classifier, MinMaxEncoder], new: tuple[Classifier, MinMaxEncoder],
                     audit: pd.DataFrame, out_dir: Path, compared: tuple[str, str] = ("current", "reference")) -> dict:
    """h_old vs h_new probabilities on the audit rows; returns the figures and file paths."""
    title = f"Prediction drift: h of {compared[0]} vs {compared[1]} on {len(audit)} fixed audit rows"
    snapshot = build_prediction_drift_report(reference=inputs.scores(*old, audit), current=inputs.scores(*new, audit),
                                             name=title)
    files = export.save_report(snapshot, out_dir, "prediction_drift", title=title,
                               subtitle=f"h_probability = P(favourable | applicant); decision = accepted when "
                                        f"h_probability > 0.5; {_made()}.")
    return export.prediction_summary(snapshot) | {"files": files, "title": title}


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
                    thresholds: RecourseThresholds, out_dir: Path, title: str = "Recourse quality") -> dict:
    """Recourse report (validity, cost, plausibility, ledger still valid by version); figures and paths."""
    current = audit_frame
    if len(judged):
        ledger_rows = recourse_frame(issued_by=judged["issued_by"].to_numpy(),
                                    still_valid=judged["still_valid"].to_numpy())
        current = pd.concat([audit_frame, ledger_rows], ignore_index=True)
    snapshot = build_recourse_report(reference=reference, current=current, thresholds=thresholds, name=title)
    issued = sorted(judged["issued_by"].astype(str).unique(), key=export.version_key) if len(judged) else []
    subtitle = (f"Audit rows: this pair's recourse{' vs the previous champion' if reference is not None else ''}; "
                + (f"ledger: recourse issued by classifier v{', v'.join(issued)}, judged again by the new h; "
                   if issued else "ledger: empty; ") + _made() + ".")
    files = export.save_report(snapshot, out_dir, "recourse", title=title, subtitle=subtitle)
    return export.recourse_summary(snapshot) | {"files": files, "title": title}


@task(cache_policy=NO_CACHE)
def previous_audit_recourse(report_dir: str | None) -> pd.DataFrame | None:
    """The previous champion's audit recourse frame, if its monitoring run left one."""
    path = Path(report_dir) / "audit_recourse.csv" if report_dir else None
    return pd.read_csv(path, keep_default_na=True) if path is not None and path.exists() else None


def with_current(history: pd.DataFrame, version: str, validity: dict[str, tuple[int, float]]) -> pd.DataFrame:
    """The validity history with this monitoring run's rows appended."""
    now = pd.DataFrame([{"monitored_version": str(version), "issued_by": by, "n": n, "still_valid": share}
                        for by, (n, share) in validity.items()], columns=history.columns)
    frames = [f for f in (history, now) if len(f)]  # concat of an empty frame is deprecated in pandas
    return pd.concat(frames, ignore_index=True) if frames else history


@task(cache_policy=NO_CACHE)
def plot_validity(history: pd.DataFrame, version: str, validity: dict[str, tuple[int, float]], out_dir: Path) -> str:
    """PNG of ledger validity over the monitored classifier versions, this one included."""
    return export.plot_ledger_validity(with_current(history, version, validity), out_dir / "ledger_validity.png")


@task(cache_policy=NO_CACHE)
def validity_over_time_report(history: pd.DataFrame, version: str, validity: dict[str, tuple[int, float]],
                              out_dir: Path, floor: float) -> dict:
    """One Evidently report with every (issuing version, judging champion) pair; its file paths (None while
    no recourse has been judged)."""
    together = with_current(history, version, validity)
    if together.empty:
        return {"files": None}
    snapshot = build_validity_over_time_report(together, floor=floor)
    return {"files": export.save_report(snapshot, out_dir, "validity_over_time"),
            "pairs": int(len(together)), "failed_tests": [t["name"] for t in snapshot.dict()["tests"]
                                                           if t["status"] == "FAIL"]}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def log_validity_over_time(tracking_uri: str, artifact_root: Path, dataset: str, version: str,
                           validity: dict[str, tuple[int, float]]) -> str | None:
    """Validity over time in one MLflow run per data set (`validity-over-time-<dataset>`, kept open across
    champions): metric `still_valid_issued_by_v<X>` at step = the judging champion's version, so the MLflow
    UI draws every issuing version's line over the champions on one chart. Returns the run id."""
    if not validity:
        return None
    _monitor_experiment(tracking_uri, artifact_root)
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(MONITOR_EXPERIMENT)
    found = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.kind = 'validity_over_time' and tags.dataset = '{dataset}'",
                               max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(experiment.experiment_id, run_name=f"validity-over-time-{dataset}",
                                tags={"kind": "validity_over_time", "dataset": dataset})
        run_id = run.info.run_id
        client.set_terminated(run_id)  # a record, not a job: it stays FINISHED between champions
    step = int(version) if str(version).isdigit() else 0
    for by, (_, share) in validity.items():
        client.log_metric(run_id, f"still_valid_issued_by_v{by}", float(share), step=step)
    return run_id


def _monitor_experiment(tracking_uri: str, artifact_root: Path) -> None:
    from tasks.registry.client import ensure_experiment

    mlflow.set_tracking_uri(tracking_uri)
    # Artifacts under GENRE_HOME beside the pipeline's, never in a ./mlruns of the working directory;
    # a tracking server (`make up`) keeps them itself (proxied artifacts).
    location = None if is_remote(tracking_uri) else Path(artifact_root).resolve().as_uri()
    ensure_experiment(mlflow.MlflowClient(tracking_uri), MONITOR_EXPERIMENT, location)
    mlflow.set_experiment(MONITOR_EXPERIMENT)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def log_monitoring_run(tracking_uri: str, artifact_root: Path, summary: dict, out_dir: Path) -> str:
    """Log the reports, the plot and the headline figures to MLflow; returns the run id."""
    _monitor_experiment(tracking_uri, artifact_root)
    metrics = {
        "drift_share": (summary.get("data_drift") or {}).get("drift_share"),
        "decision_flip_share": (summary.get("prediction_drift") or {}).get("decision_flip_share"),
        "recourse_validity": summary["recourse"].get("validity"),
        "recourse_cost": summary["recourse"].get("cost"),
        "recourse_plausibility": summary["recourse"].get("plausibility"),
        "ledger_still_valid": summary["recourse"].get("ledger_still_valid"),
    } | {f"ledger_still_valid_v{v}": s for v, s in summary["recourse"]["ledger_still_valid_by_version"].items()}
    version = str(summary["classifier_version"])
    override = summary.get("commitment_override") or {}
    with mlflow.start_run(run_name=f"monitor-v{summary['classifier_version']}") as run:
        mlflow.set_tags({
            "kind": "monitoring", "dataset": summary["dataset"],
            "classifier_version": summary["classifier_version"], "generator_version": summary["generator_version"],
            "previous_classifier_version": summary["previous_version"] or "none", OWNER_TAG: owner_tag(),
        } | ({"commitment.override.by": override["by"], "commitment.override.reason": override["reason"],
              "commitment.override.voided": override["voided"]} if override else {}))
        # At step = the champion's version, so the per-version figures line up with the validity-over-time run.
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None},
                           step=int(version) if version.isdigit() else 0)
        mlflow.log_artifacts(str(out_dir), artifact_path="monitoring")
        return run.info.run_id


def _with_ledger(url: str, action):
    ledger = Ledger(url)
    try:
        return action(ledger)
    finally:
        ledger.dispose()
