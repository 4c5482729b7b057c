"""Prefect tasks for issuing recourse to a batch of applicants and recording it in the ledger (the partitions
themselves are answered by `tasks.serving.partitions`)."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genre.core.classifier import Classifier
from genre.core.datasets import DatasetSpec
from genre.core.encoding import MinMaxEncoder
from tasks.ledger.db import Issued
from tasks.registry import client as registry
from tasks.retry import PermanentError, transient_only

ID_COLUMN = "applicant_id"
ACCEPTED, ISSUED, NO_RECOURSE = "accepted", "recourse_issued", "no_valid_recourse"


@dataclass
class ChampionPair:
    """The deployed classifier h and the generator trained against it, with their registry versions."""

    classifier: Classifier
    encoder: MinMaxEncoder
    genre: object  # genre.core.sampler.GenRe
    classifier_version: str
    generator_version: str


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_only)
def load_champion_pair(dataset: str) -> ChampionPair:
    """Load the champion classifier and the generator trained against it, as `registry.resolve_champion`
    resolves them for serving and monitoring too (a mismatched generator alias is warned about, not used)."""
    champion = registry.resolve_champion()
    if champion.classifier_version is None:
        raise PermanentError("no champion pair in the registry yet: run the retrain flow (or `make run`) first")
    for warning in champion.warnings:
        get_run_logger().warning("%s", warning)
    classifier_version, generator_version = champion.classifier_version, champion.generator_version
    classifier, encoder = registry.load_classifier_version(classifier_version)
    if encoder.spec.name != dataset:
        raise ValueError(f"the champion classifier v{classifier_version} is for data set '{encoder.spec.name}', "
                         f"not '{dataset}'")
    return ChampionPair(classifier, encoder, registry.load_generator_version(generator_version),
                        classifier_version, generator_version)


@dataclass
class RecourseBatch:
    """Recourse for the rejected applicants: `rows` index the applicants table."""

    rows: np.ndarray  # (m,) positions of the rejected applicants
    recourse: pd.DataFrame  # (m, d) in the applicant's units
    cost: np.ndarray  # (m,) L1 in the champion's encoded space
    score: np.ndarray  # (m,) h(x+)

    @property
    def valid(self) -> np.ndarray:
        return self.score > 0.5


def ledger_entries(
    pair: ChampionPair, spec: DatasetSpec, table: pd.DataFrame, ids: list[str], score: np.ndarray, batch: RecourseBatch,
    real_ids: bool = True,
) -> list[Issued]:
    """The recourses to issue: only those the champion classifier accepts. `real_ids`: the ids came from the
    applicants' own id column (row numbers are never honoured later)."""
    factuals = records(table.iloc[batch.rows])
    recourses = records(batch.recourse)
    return [
        Issued(
            applicant_id=ids[row], dataset=spec.name, factual=factuals[i], recourse=recourses[i],
            cost=float(batch.cost[i]), score_factual=float(score[row]), score_recourse=float(batch.score[i]),
            classifier_version=pair.classifier_version, generator_version=pair.generator_version, real_id=real_ids,
        )
        for i, row in enumerate(batch.rows)
        if batch.valid[i]
    ]


def results_table(
    ids: list[str], table: pd.DataFrame, score: np.ndarray, batch: RecourseBatch, ledger_ids: list[int]
) -> pd.DataFrame:
    """One row per applicant: id, status, h(x), factual, `recourse.<feature>`, cost, h(x+), ledger id."""
    out = pd.DataFrame({ID_COLUMN: ids, "status": ACCEPTED, "score": score})
    out = pd.concat([out, table.reset_index(drop=True)], axis=1)
    rows = batch.rows
    out.loc[rows, "status"] = np.where(batch.valid, ISSUED, NO_RECOURSE)
    for f in batch.recourse.columns:
        values = batch.recourse[f]
        # Whole-number features stay whole (nullable Int64: accepted rows have no recourse, not NaN).
        dtype = "Int64" if pd.api.types.is_integer_dtype(values) else values.dtype
        column = pd.Series(pd.NA if dtype == "Int64" else None, index=out.index, dtype=dtype)
        column.iloc[rows] = values.to_numpy()
        out[f"recourse.{f}"] = column
    out.loc[rows, "cost"] = batch.cost
    out.loc[rows, "score_recourse"] = batch.score
    out["ledger_id"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out.loc[rows[batch.valid], "ledger_id"] = ledger_ids
    return out


def whole_as_integers(table: pd.DataFrame, encoder) -> pd.DataFrame:
    """The applicants' own values, with features that were whole in training written as integers when every
    value sent is whole (30.0 -> 30); any other value is shown exactly as sent."""
    out = table.copy()
    for f, places in zip(encoder.spec.features, getattr(encoder, "decimals_", None) or []):
        if places == 0 and out[f].dtype.kind == "f" and bool((out[f] % 1 == 0).all()):
            out[f] = out[f].astype(np.int64)
    return out


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts of Python ints, floats and strings (the applicant's units)."""
    return json.loads(frame.to_json(orient="records"))


def new_batch_id(path: Path) -> str:
    return f"{path.stem[:40]}-{uuid.uuid4().hex[:12]}"
