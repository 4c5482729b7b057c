"""Log a retrain run to MLflow and register its pair.

The run is opened when the retrain starts (`start_retrain_run`, tagged with its owner process) and ends
FINISHED only once all three versions exist, so a run left RUNNING or FAILED marks a retrain that died
(`tasks.registry.reconcile`). Each version is created with all its tags in the same call (MLflow writes a version
and its tags in one database transaction): no version is ever seen without them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import mlflow
import numpy as np
from mlflow.models import infer_signature
from prefect import task
from prefect.cache_policies import NO_CACHE

from genre.core.datasets import DatasetSpec, split_xy
from tasks.training import plots
from tasks.faults import fault_point
from tasks.liveness import OWNER_TAG, owner_tag
from tasks.training.pyfunc_models import PIP_REQUIREMENTS, ClassifierModel, GeneratorModel
from tasks.serving.recourse_model import register_recourse_model
from tasks.registry.client import configure_mlflow
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PipelineSettings
from tasks.data.store import Snapshot
from tasks.training.fit import split_snapshot

EXAMPLE_ROWS = 5


def _log_pyfunc(name: str, model_cls, artifacts: dict[str, str], example):
    """Log one pyfunc adapter in the active run; its signature comes from the adapter's own answer on `example`."""
    adapter = model_cls()
    adapter.load_context(SimpleNamespace(artifacts=artifacts))
    return mlflow.pyfunc.log_model(
        name=name, python_model=model_cls(), artifacts=artifacts,
        signature=infer_signature(example, adapter.predict(None, example)), input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
    )


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
        mlflow.log_metrics({k: float(v) for k, v in figures.items()
                            if isinstance(v, (int, float)) and not math.isnan(float(v))})
        for step, loss in enumerate(clf_hist["loss"]):
            mlflow.log_metric("classifier_loss", loss, step=step)
        figs = [("loss_curve.png", plots.loss_curves(clf_hist["loss"], gen_hist["history"] if gen_hist else None))]
        if gen_hist:
            for step, (tr, va) in enumerate(zip(gen_hist["history"]["train_loss"], gen_hist["history"]["val_loss"])):
                mlflow.log_metrics({"generator_train_loss": tr, "generator_val_loss": va}, step=step)
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
        clf_info = _log_pyfunc("classifier", ClassifierModel, clf_artifacts, applicants)
        gen_info = None
        if gen_hist:
            gen_artifacts = {"genre": str(run_dir / "genre"), "sampling": str(run_dir / "sampling.json")}
            gen_info = _log_pyfunc("generator", GeneratorModel, gen_artifacts, factuals)
        common = {"dataset": spec.name, "data_hash": snapshot.data_hash, "run_id": run.info.run_id}
        cv = register(clf_info.model_uri, CLASSIFIER_MODEL, common | gate_tags | {
            "training_data": str(snapshot.path), "store_rows": snapshot.rows})
        fault_point("after_classifier_version")
        gv = rv = None
        if gen_info is not None:
            gv = register(gen_info.model_uri, GENERATOR_MODEL, common | gate_tags | {"classifier_version": cv})
            # The pair served as one model (issue 5): registered with it, promoted with it (move_champion).
            rv = register_recourse_model(run.info.run_id, run_dir, factuals, common, cv, gv)
    return {"run_id": run.info.run_id, "classifier_version": cv, "generator_version": gv, "recourse_version": rv}
