"""`genre-recourse`: the champion pair served as one MLflow pyfunc model (a thin adapter).

`load_context` rebuilds the encoder, h and the generator from the pair's checkpoints; `predict` delegates
to `genre.serving.answer` and records every answered row in the ledger (`tasks.serving_ledger`). It is
registered in the same MLflow run as its pair, tagged with both versions, and moves `champion` with them
(`tasks.registry.move_champion`).

The input signature types every feature as `Any` on purpose: MLflow enforces column types before
`predict`, so with typed columns a single `"abc"` in `age` would fail the whole request with a 400;
`genre.serving` checks each row against the data set's spec instead and marks only that row
`invalid_input`. A missing column still fails the request (the columns are required).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema

from genre.serving import answer, answer_columns
from tasks.artifacts import load_classifier, load_encoder, load_genre, load_json
from tasks.pyfunc_models import PIP_REQUIREMENTS
from tasks.registry import CHALLENGER, set_alias, set_tags
from tasks.serving_ledger import LEDGER_SWITCH, ServingLedger, recording_enabled
from tasks.settings import RECOURSE_MODEL, PipelineSettings

ID_COLUMN = "applicant_id"
# Recourse needs SQLAlchemy for the ledger on top of what the other two models need.
RECOURSE_REQUIREMENTS = [*PIP_REQUIREMENTS, "sqlalchemy==2.1.9"]


class RecourseModel(mlflow.pyfunc.PythonModel):
    """Artifacts: `classifier` (h), `encoder`, `genre` (generator + support + second opinion), `sampling`, `pair`."""

    def load_context(self, context) -> None:
        a = context.artifacts
        self.genre = load_genre(a["genre"], encoder=load_encoder(a["encoder"]), classifier=load_classifier(a["classifier"]))
        self.sampling = load_json(a["sampling"], "sampling settings")
        self.pair = load_json(a["pair"], "pair versions")
        self.ledger = ServingLedger() if recording_enabled() else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        out = answer(model_input, self.genre, **self.sampling)
        ids = (model_input[ID_COLUMN].astype(str).tolist() if ID_COLUMN in model_input.columns else None)
        if self.ledger is not None:
            out["ledger_id"] = self.ledger.record(model_input, out, spec=self.genre.spec, versions=self.pair,
                                                  applicant_ids=ids)
        else:
            out["ledger_id"] = None
        out["classifier_version"] = self.pair["classifier_version"]
        out["generator_version"] = self.pair["generator_version"]
        return out.astype(object).where(out.notna(), None)


def signature(spec) -> ModelSignature:
    """Features as required `Any` columns (see the module docstring), an optional applicant id; typed output."""
    inputs = Schema([ColSpec(AnyType(), f) for f in spec.features] + [ColSpec(AnyType(), ID_COLUMN, required=False)])
    numeric = {"cost", "score", "probability"}
    outputs = [ColSpec("string", "status")] + [
        ColSpec("double" if c in numeric else "string" if c in spec.categorical or c in ("reason", "changed")
                else "long" if c in spec.integer else "double", c, required=False)
        for c in answer_columns(spec)[1:]
    ] + [ColSpec("long", "ledger_id", required=False), ColSpec("string", "classifier_version"),
         ColSpec("string", "generator_version")]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


@contextmanager
def _no_ledger():
    """MLflow calls `predict` on the input example while logging: those rows are not answers to anyone."""
    before = os.environ.get(LEDGER_SWITCH)
    os.environ[LEDGER_SWITCH] = "off"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LEDGER_SWITCH, None)
        else:
            os.environ[LEDGER_SWITCH] = before


def recourse_artifacts(run_dir: Path, classifier_version: str, generator_version: str, run_id: str) -> dict[str, str]:
    """Write the pair's versions beside the run's checkpoints; the artifact paths the model bundles."""
    pair = run_dir / "pair.json"
    pair.write_text(json.dumps({"classifier_version": str(classifier_version),
                                "generator_version": str(generator_version), "run_id": run_id}))
    return {"classifier": str(run_dir / "classifier.pt"), "encoder": str(run_dir / "encoder.json"),
            "genre": str(run_dir / "genre"), "sampling": str(run_dir / "sampling.json"), "pair": str(pair)}


def register_recourse_model(run_id: str, run_dir: Path, example: pd.DataFrame, tags: dict[str, object],
                            classifier_version: str, generator_version: str, settings: PipelineSettings) -> str:
    """Log `genre-recourse` into the pair's run, tag it with the pair and make it `challenger`; its version."""
    artifacts = recourse_artifacts(run_dir, classifier_version, generator_version, run_id)
    adapter = RecourseModel()
    with _no_ledger():
        adapter.load_context(SimpleNamespace(artifacts=artifacts))
        spec = adapter.genre.spec
        example = example[list(spec.features)].reset_index(drop=True)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="recourse", python_model=RecourseModel(), artifacts=artifacts, signature=signature(spec),
                input_example=example, pip_requirements=RECOURSE_REQUIREMENTS, registered_model_name=RECOURSE_MODEL,
            )
    version = str(info.registered_model_version)
    set_tags(RECOURSE_MODEL, version, {**tags, "classifier_version": classifier_version,
                                       "generator_version": generator_version}, settings)
    set_alias(RECOURSE_MODEL, CHALLENGER, version, settings)
    return version
