"""Thin MLflow pyfunc adapters: `load_context` rebuilds the models from checkpoints, `predict` delegates.

Both take the applicant's table in its own units (the data set's feature columns) so a served model can
be called with the same rows the contracts check. Rows that cannot be read come back with a `status`
column naming the problem instead of failing the whole request.
"""
from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema

from genre.core.datasets import DataError, DatasetSpec, coerce_frame
from genre.core.encoding import MinMaxEncoder
from genre.core.metrics import cost as recourse_cost
from tasks.registry.artifacts import load_classifier, load_encoder, load_genre, load_json

# Given explicitly: inferring them is slow and picks up the local torch build's label (STACK.md).
PIP_REQUIREMENTS = [
    "torch==2.13.0", "numpy==2.4.6", "pandas==2.3.3", "scikit-learn==1.9.1", "mlflow==3.17.2",
    "pyyaml==6.0.4", "tqdm==4.70.1",
]


def value_type(spec: DatasetSpec, column: str) -> str:
    """MLflow type of a feature in an answer: categories as strings, whole-number features as longs."""
    return "string" if column in spec.categorical else "long" if column in spec.integer else "double"


def feature_inputs(spec: DatasetSpec) -> list[ColSpec]:
    """Every feature as a required `Any` column: the adapters read each row against the spec themselves and
    mark only an unreadable row (`status`), where MLflow's type check would fail the whole request. Declared,
    not inferred: an inferred integer column rejects a row with a missing value before `predict` sees it."""
    return [ColSpec(AnyType(), f) for f in spec.features]


def classifier_signature(spec: DatasetSpec) -> ModelSignature:
    outputs = Schema([ColSpec("double", "probability", required=False), ColSpec("string", "status")])
    return ModelSignature(inputs=Schema(feature_inputs(spec)), outputs=outputs)


def generator_signature(spec: DatasetSpec) -> ModelSignature:
    outputs = [ColSpec(value_type(spec, f), f, required=False) for f in spec.features]
    outputs += [ColSpec("double", "probability", required=False), ColSpec("double", "cost", required=False),
                ColSpec("string", "status")]
    return ModelSignature(inputs=Schema(feature_inputs(spec)), outputs=Schema(outputs))


def _encode_rows(encoder: MinMaxEncoder, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Encoded rows and a per-row status ("ok" or the DataError); bad rows encode as NaN."""
    spec = encoder.spec
    frame = frame[list(spec.features)]
    try:
        return encoder.transform(coerce_frame(frame, spec, source="request")), ["ok"] * len(frame)
    except (DataError, ValueError):
        pass
    encoded = np.full((len(frame), spec.d), np.nan, dtype=np.float32)
    status = []
    for i in range(len(frame)):
        try:
            encoded[i] = encoder.transform(coerce_frame(frame.iloc[[i]], spec, source=f"request row {i + 1}"))[0]
            status.append("ok")
        except (DataError, ValueError) as exc:
            status.append(str(exc))
    return encoded, status


class ClassifierModel(mlflow.pyfunc.PythonModel):
    """h(x) = P(favourable | applicant): artifacts `classifier` (checkpoint) and `encoder` (JSON)."""

    def load_context(self, context) -> None:
        self.classifier = load_classifier(context.artifacts["classifier"])
        self.encoder = load_encoder(context.artifacts["encoder"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        encoded, status = _encode_rows(self.encoder, model_input)
        ok = np.array([s == "ok" for s in status])
        if ok.all():
            return pd.DataFrame({"probability": self.classifier.predict_proba(encoded), "status": status})
        proba = np.full(len(encoded), None, dtype=object)  # None, not NaN: strict JSON clients reject NaN
        if ok.any():
            proba[ok] = self.classifier.predict_proba(encoded[ok])
        return pd.DataFrame({"probability": proba, "status": status})


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """GenRe recourse for each factual row: artifacts `genre` (a `GenRe.save` folder) and `sampling` (JSON)."""

    def load_context(self, context) -> None:
        self.genre = load_genre(context.artifacts["genre"])
        self.sampling = load_json(context.artifacts["sampling"], "sampling settings")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        encoded, status = _encode_rows(self.genre.encoder, model_input)
        ok = np.array([s == "ok" for s in status])
        spec: DatasetSpec = self.genre.spec
        # Judged and written in the data's own units and precision (whole numbers stay whole).
        recourse = self.genre.encoder.snap_units(self.genre.generate(encoded[ok], **self.sampling))
        table = self.genre.encoder.to_units(recourse)
        table["probability"] = self.genre.classifier.predict_proba(recourse)
        table["cost"] = recourse_cost(encoded[ok], recourse)
        if ok.all():
            table["status"] = status
            return table
        # Some rows were unreadable: keep row order, leave their recourse empty (None, never NaN).
        out = pd.DataFrame({c: pd.Series([None] * len(encoded), dtype=object) for c in table.columns})
        out.loc[ok, list(table.columns)] = table.astype(object).to_numpy()
        out["status"] = status
        return out
