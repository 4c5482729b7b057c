"""Log a retrain run to MLflow and register its pair.

The run is opened when the retrain starts (`start_retrain_run`, tagged with its owner process) and ends
FINISHED only once all three versions exist, so a run left RUNNING or FAILED marks a retrain that died
(`tasks.registry.reconcile`). Each version is created with all its tags in the same call (MLflow writes a version
and its tags in one database transaction): no version is ever seen without them.
"""
from __future__ import annotations

import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import mlflow.data
import numpy as np
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from prefect import task
from prefect.cache_policies import NO_CACHE

from genre.core.datasets import DatasetSpec, split_xy
from tasks.training import plots
from tasks.faults import fault_point
from tasks.liveness import OWNER_TAG, owner_tag
from tasks import model_code
from tasks.training.pyfunc_models import PIP_REQUIREMENTS, classifier_signature, generator_signature
from tasks.serving.recourse_model import register_recourse_model
from tasks.registry.client import configure_mlflow
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL, PipelineSettings
from tasks.data.store import Snapshot
from tasks.training.fit import split_snapshot

EXAMPLE_ROWS = 5


def _log_pyfunc(name: str, code: str, artifacts: dict[str, str], example, signature):
    """Log one pyfunc adapter in the active run as a model from code (`tasks/model_code`), with its declared
    signature (see `tasks.training.pyfunc_models.feature_inputs`)."""
    return mlflow.pyfunc.log_model(
        name=name, python_model=code, artifacts=artifacts, signature=signature, input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
    )


# Figures of evaluation.json under namespaced metric names: `recourse.cost` beside `classifier.auc`, never a bare
# `score` (the paper's method score), `n` or `cost`.
METRIC_NAMES = {
    "accuracy": "classifier.accuracy", "auc": "classifier.auc", "holdout_rows": "classifier.holdout_rows",
    "n": "recourse.n_factuals", "cost": "recourse.cost", "cost_median": "recourse.cost_median",
    "validity": "recourse.validity_oracle", "validity_classifier": "recourse.validity_h",
    "plausibility": "recourse.plausibility", "score": "recourse.paper_score",
    "immutable_changed": "recourse.immutable_changed", "categorical_out_of_domain": "recourse.categorical_out_of_domain",
    "out_of_range": "recourse.out_of_range", "factuals_already_favourable": "recourse.factuals_already_favourable",
}


def metric_name(figure: str) -> str:
    return METRIC_NAMES.get(figure, f"recourse.{figure}")


def _dataset(frame, snapshot: Snapshot, spec: DatasetSpec, part: str):
    """An MLflow dataset for a part of the store snapshot (its source the snapshot CSV, its digest its content)."""
    source = get_dataset_source_from_json(json.dumps({"uri": Path(snapshot.path).resolve().as_uri()}), "local")
    # Whole-number columns described as doubles, MLflow's documented remedy for its "integer column(s)" hint:
    # a later batch may hold a missing value there, which an integer schema could not describe.
    ints = frame.select_dtypes("integer").columns
    frame = frame.astype({c: "float64" for c in ints})
    return mlflow.data.from_pandas(frame, source=source, name=f"{spec.name}-{snapshot.data_hash}-{part}",
                                   targets=spec.target)


def log_datasets(snapshot: Snapshot, spec: DatasetSpec, settings: PipelineSettings) -> None:
    """The run's inputs: the snapshot's training rows and its held-out rows (the run page lists both)."""
    train, held = split_snapshot(snapshot.path, spec, settings.training.holdout_percent)
    tags = {"data_hash": snapshot.data_hash, "store_rows": str(snapshot.rows)}
    mlflow.log_input(_dataset(train, snapshot, spec, "train"), context="training", tags=tags)
    mlflow.log_input(_dataset(held, snapshot, spec, "holdout"), context="evaluation", tags=tags)


MODEL_DESCRIPTIONS = {
    CLASSIFIER_MODEL: "h(x) = P(favourable | applicant), the classifier recourse is made for. Input: a table of the "
                      "data set's features in their own units; output: probability and a per-row status.",
    GENERATOR_MODEL: "GenRe's recourse generator (Garg et al., ICLR 2025), trained against the genre-classifier "
                     "version in its `classifier_version` tag. Input: rejected applicants; output: their recourse "
                     "in the applicant's units, its probability under h and its cost.",
    RECOURSE_MODEL: "A classifier/generator pair served as one model (`make serve`): applicants in, a status, the "
                    "recourse, its cost and the list of changed features out; every answer is recorded in the "
                    "recourse ledger. Tags name the pair's versions and its gate verdicts.",
}


def describe_versions(snapshot: Snapshot, spec: DatasetSpec, figures: dict, gate_tags: dict, cv: str,
                      gv: str | None, rv: str | None) -> None:
    """A description on each registered model (once) and on each new version: its data, figures and verdict."""
    client = mlflow.MlflowClient()
    verdict = ("passed every gate" if str(gate_tags.get("gates.passed")) == "True"
               else "failed a gate: stays challenger")
    data = f"data set '{spec.name}', store snapshot {snapshot.data_hash} ({snapshot.rows} rows, {snapshot.batches} batches)"
    h = f"held-out accuracy {figures.get('accuracy', float('nan')):.3f}, AUC {figures.get('auc', float('nan')):.3f}"
    rec = (f"recourse for {figures.get('n', 0)} rejected held-out rows: cost {figures.get('cost', float('nan')):.3f}, "
           f"validity {figures.get('validity', float('nan')):.3f} (oracle) / "
           f"{figures.get('validity_classifier', float('nan')):.3f} (h), plausibility "
           f"{figures.get('plausibility', float('nan')):.3f}")
    texts = {CLASSIFIER_MODEL: (cv, f"h trained on {data}; {h}; {verdict}."),
             GENERATOR_MODEL: (gv, f"generator trained against classifier v{cv} on {data}; {rec}; {verdict}."),
             RECOURSE_MODEL: (rv, f"classifier v{cv} + generator v{gv} on {data}; {h}; {rec}; {verdict}.")}
    for model, (version, text) in texts.items():
        if version is None:
            continue
        if not client.get_registered_model(model).description:
            client.update_registered_model(model, description=MODEL_DESCRIPTIONS[model])
        client.update_model_version(model, version, description=text)


def register(model_uri: str, name: str, tags: dict[str, object]) -> str:
    """Create a version of `name` from a logged model, with all its tags in the same call; its number."""
    return str(mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()}).version)


@task(cache_policy=NO_CACHE)
def start_retrain_run(spec: DatasetSpec, data_hash: str, settings: PipelineSettings) -> str:
    """Open the retrain's MLflow run (RUNNING until its pair is registered), tagged with its owner process."""
    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    run = client.create_run(experiment.experiment_id, run_name=f"retrain-{spec.name}-{data_hash}",
                            tags={OWNER_TAG: owner_tag(), "genre.kind": "retrain"})
    return run.info.run_id


SYSTEM_METRICS_SECONDS = "GENRE_SYSTEM_METRICS_SECONDS"  # sampling interval (default 10 s; 0: off)


@contextmanager
def system_metrics(run_id: str, settings: PipelineSettings):
    """MLflow's system metrics (CPU, memory, disk, network, every GENRE_SYSTEM_METRICS_SECONDS) into the run
    while the body runs."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    interval = float(os.environ.get(SYSTEM_METRICS_SECONDS, "10") or 0)
    if interval <= 0:
        yield
        return
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # not its start/stop lines, each run
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, tracking_uri=settings.mlflow_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


@task(cache_policy=NO_CACHE)
def end_run(run_id: str, status: str, settings: PipelineSettings) -> None:
    """Mark the retrain's run FAILED (or FINISHED) when the flow stops early."""
    client = configure_mlflow(settings)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)


def _flat(prefix: str, values: dict) -> dict:
    return {f"{prefix}.{k}": (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}


def _examples(snapshot: Snapshot, spec: DatasetSpec, run_dir: Path, settings: PipelineSettings):
    """Input examples in the applicant's units: held-out rows, and the factuals recourse was made for."""
    _, held = split_snapshot(snapshot.path, spec, settings.training.holdout_percent)
    X_ho, _ = split_xy(held, spec)
    applicants = X_ho.head(EXAMPLE_ROWS).reset_index(drop=True)
    if not (run_dir / "recourse.npz").exists():
        return applicants, None
    picked = np.load(run_dir / "recourse.npz")["holdout_index"][:EXAMPLE_ROWS]
    return applicants, (X_ho.iloc[picked].reset_index(drop=True) if len(picked) else applicants)


# No retries: a second attempt would register a second version of each model.
@task(cache_policy=NO_CACHE)
def log_and_register(snapshot: Snapshot, spec: DatasetSpec, run_dir: Path, settings: PipelineSettings,
                     run_id: str, gate_tags: dict[str, object]) -> dict:
    """Into the open run: params, metrics, loss curve and cost/validity plots, the three models; each registered
    with its tags (gate verdicts included); then the run ends FINISHED. No alias is set here."""
    configure_mlflow(settings)
    figures = json.loads((run_dir / "evaluation.json").read_text())
    clf_hist = json.loads((run_dir / "classifier_history.json").read_text())
    # No generator when h failed its gates first: the run then logs and registers h alone.
    gen_path = run_dir / "generator_history.json"
    gen_hist = json.loads(gen_path.read_text()) if gen_path.exists() else None
    sampling = {k: getattr(settings.training, k) for k in ("k", "temperature", "select", "seed")}
    (run_dir / "sampling.json").write_text(json.dumps(sampling))
    with mlflow.start_run(run_id=run_id) as run:
        params = {"dataset": spec.name, "data_hash": snapshot.data_hash, "store_rows": snapshot.rows,
                  "store_batches": snapshot.batches, **_flat("classifier", clf_hist["config"]), **_flat("sampling", sampling)}
        if gen_hist:
            params |= _flat("generator", gen_hist["config"]) | _flat("generator_train", gen_hist["train"])
            params["generator_recipe.source"] = gen_hist.get("recipe_source", "unknown")
            mlflow.set_tag("genre.recipe_source", gen_hist.get("recipe_source", "unknown"))
        mlflow.log_params(params)
        log_datasets(snapshot, spec, settings)
        mlflow.log_metrics({metric_name(k): float(v) for k, v in figures.items()
                            if isinstance(v, (int, float)) and not math.isnan(float(v))})
        for step, loss in enumerate(clf_hist["loss"]):
            mlflow.log_metric("classifier.train_loss", loss, step=step)
        figs = [("loss_curve.png", plots.loss_curves(clf_hist["loss"], gen_hist["history"] if gen_hist else None))]
        if gen_hist:
            for step, (tr, va) in enumerate(zip(gen_hist["history"]["train_loss"], gen_hist["history"]["val_loss"])):
                mlflow.log_metrics({"generator.train_loss": tr, "generator.val_loss": va}, step=step)
            rec = np.load(run_dir / "recourse.npz")
            figs.append(("cost_validity.png", plots.cost_validity(rec["cost"], rec["h"], rec["oracle"])))
        for name, fig in figs:
            fig.savefig(run_dir / name, dpi=110)
            mlflow.log_figure(fig, f"plots/{name}")
            plt.close(fig)
        mlflow.log_artifact(str(run_dir / "evaluation.json"))
        for name in ("commitment.json", "commitment.md"):  # the commitment gate's report (issue 13)
            if (run_dir / name).exists():
                mlflow.log_artifact(str(run_dir / name), artifact_path="commitment")

        applicants, factuals = _examples(snapshot, spec, run_dir, settings)
        clf_artifacts = {"classifier": str(run_dir / "classifier.pt"), "encoder": str(run_dir / "encoder.json")}
        clf_info = _log_pyfunc("classifier", model_code.CLASSIFIER, clf_artifacts, applicants,
                               classifier_signature(spec))
        gen_info = None
        if gen_hist:
            gen_artifacts = {"genre": str(run_dir / "genre"), "sampling": str(run_dir / "sampling.json")}
            gen_info = _log_pyfunc("generator", model_code.GENERATOR, gen_artifacts, factuals, generator_signature(spec))
        common = {"dataset": spec.name, "data_hash": snapshot.data_hash, "run_id": run.info.run_id}
        cv = register(clf_info.model_uri, CLASSIFIER_MODEL, common | gate_tags | {
            "training_data": str(snapshot.path), "store_rows": snapshot.rows})
        fault_point("after_classifier_version")
        gv = rv = None
        if gen_info is not None:
            gv = register(gen_info.model_uri, GENERATOR_MODEL, common | gate_tags | {"classifier_version": cv})
            # The pair served as one model (issue 5): registered with it, promoted with it (move_champion).
            rv = register_recourse_model(run.info.run_id, run_dir, factuals, common | gate_tags, cv, gv)
        describe_versions(snapshot, spec, figures, gate_tags, cv, gv, rv)
    return {"run_id": run.info.run_id, "classifier_version": cv, "generator_version": gv, "recourse_version": rv}
