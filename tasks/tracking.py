"""Log a retrain run to MLflow and register its pair as `challenger`."""
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

from genre.datasets import DatasetSpec, split_xy
from tasks import plots
from tasks.pyfunc_models import PIP_REQUIREMENTS, ClassifierModel, GeneratorModel
from tasks.recourse_model import register_recourse_model
from tasks.registry import CHALLENGER, configure_mlflow, set_alias, set_tags
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PipelineSettings
from tasks.store import Snapshot
from tasks.training import split_snapshot

EXAMPLE_ROWS = 5


def _log_pyfunc(name: str, model_cls, artifacts: dict[str, str], example, registered_name: str):
    """Log and register one pyfunc adapter; its signature comes from the adapter's own answer on `example`."""
    adapter = model_cls()
    adapter.load_context(SimpleNamespace(artifacts=artifacts))
    return mlflow.pyfunc.log_model(
        name=name, python_model=model_cls(), artifacts=artifacts,
        signature=infer_signature(example, adapter.predict(None, example)), input_example=example,
        pip_requirements=PIP_REQUIREMENTS, registered_model_name=registered_name,
    )


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


# No retries: a second attempt would register a second, untagged version of each model.
@task(cache_policy=NO_CACHE)
def log_and_register(snapshot: Snapshot, spec: DatasetSpec, run_dir: Path, settings: PipelineSettings) -> dict:
    """One MLflow run: params, metrics, loss curve and cost/validity plots; the models registered as challenger."""
    configure_mlflow(settings)
    figures = json.loads((run_dir / "evaluation.json").read_text())
    clf_hist = json.loads((run_dir / "classifier_history.json").read_text())
    # No generator when h failed its gates first: the run then logs and registers h alone.
    gen_path = run_dir / "generator_history.json"
    gen_hist = json.loads(gen_path.read_text()) if gen_path.exists() else None
    sampling = {k: getattr(settings.training, k) for k in ("k", "temperature", "select", "seed")}
    (run_dir / "sampling.json").write_text(json.dumps(sampling))
    with mlflow.start_run(run_name=f"retrain-{spec.name}-{snapshot.data_hash}") as run:
        params = {"dataset": spec.name, "data_hash": snapshot.data_hash, "store_rows": snapshot.rows,
                  "store_batches": snapshot.batches, **_flat("classifier", clf_hist["config"]), **_flat("sampling", sampling)}
        if gen_hist:
            params |= _flat("generator", gen_hist["config"]) | _flat("generator_train", gen_hist["train"])
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

        applicants, factuals = _examples(snapshot, spec, run_dir, settings)
        clf_artifacts = {"classifier": str(run_dir / "classifier.pt"), "encoder": str(run_dir / "encoder.json")}
        clf_info = _log_pyfunc("classifier", ClassifierModel, clf_artifacts, applicants, CLASSIFIER_MODEL)
        gen_info = None
        if gen_hist:
            gen_artifacts = {"genre": str(run_dir / "genre"), "sampling": str(run_dir / "sampling.json")}
            gen_info = _log_pyfunc("generator", GeneratorModel, gen_artifacts, factuals, GENERATOR_MODEL)
    cv = str(clf_info.registered_model_version)
    common = {"dataset": spec.name, "data_hash": snapshot.data_hash, "run_id": run.info.run_id}
    set_tags(CLASSIFIER_MODEL, cv, common | {"training_data": str(snapshot.path), "store_rows": snapshot.rows}, settings)
    set_alias(CLASSIFIER_MODEL, CHALLENGER, cv, settings)
    gv = rv = None
    if gen_info is not None:
        gv = str(gen_info.registered_model_version)
        set_tags(GENERATOR_MODEL, gv, common | {"classifier_version": cv}, settings)
        set_alias(GENERATOR_MODEL, CHALLENGER, gv, settings)
        # The pair served as one model (issue 5): registered with it, promoted with it (move_champion).
        rv = register_recourse_model(run.info.run_id, run_dir, factuals, common, cv, gv, settings)
    return {"run_id": run.info.run_id, "classifier_version": cv, "generator_version": gv, "recourse_version": rv}
