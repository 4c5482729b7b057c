"""Prefect tasks for issuing recourse to a batch of applicants and recording it in the ledger."""
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
from genre.core.datasets import DatasetSpec, DataError, read_table
from genre.core.encoding import MinMaxEncoder
from genre.core.metrics import cost
from tasks.registry import client as registry
from tasks.data.csv_safe import write_csv
from tasks.ledger.db import Issued, Ledger

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


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_champion_pair(dataset: str) -> ChampionPair:
    """Load the champion classifier and the generator trained against it, as `registry.resolve_champion`
    resolves them for serving and monitoring too (a mismatched generator alias is warned about, not used)."""
    champion = registry.resolve_champion()
    if champion.classifier_version is None:
        raise RuntimeError("no champion pair in the registry yet: run the retrain flow (or `make run`) first")
    for warning in champion.warnings:
        get_run_logger().warning("%s", warning)
    classifier_version, generator_version = champion.classifier_version, champion.generator_version
    classifier, encoder = registry.load_classifier_version(classifier_version)
    if encoder.spec.name != dataset:
        raise ValueError(f"the champion classifier v{classifier_version} is for data set '{encoder.spec.name}', "
                         f"not '{dataset}'")
    return ChampionPair(classifier, encoder, registry.load_generator_version(generator_version),
                        classifier_version, generator_version)


@task(cache_policy=NO_CACHE)
def has_id_column(path: Path) -> bool:
    """Whether an applicants CSV names its applicants (an `applicant_id` column) rather than by row number."""
    return ID_COLUMN in pd.read_csv(path, nrows=0).columns


def read_applicants(path: Path, spec: DatasetSpec) -> tuple[pd.DataFrame, list[str]]:
    """Read and check an applicants CSV (the spec's features; the target is not needed) and their ids."""
    table = read_table(path, spec, require_target=False)
    ids = pd.read_csv(path, dtype=str, usecols=lambda c: c == ID_COLUMN, keep_default_na=False)
    if ID_COLUMN in ids.columns:
        blank = ids[ID_COLUMN].str.strip() == ""
        if blank.any():
            raise DataError(path, "empty applicant id", row=int(np.flatnonzero(blank)[0]) + 1, column=ID_COLUMN)
        return table, ids[ID_COLUMN].tolist()
    # Without an id column, the data row number (from 1) names the applicant.
    return table, [str(i + 1) for i in range(len(table))]


@task(cache_policy=NO_CACHE)
def score_applicants(pair: ChampionPair, table: pd.DataFrame) -> np.ndarray:
    """h(x) for each applicant, in the champion's encoding."""
    return pair.classifier.predict_proba(pair.encoder.transform(table))


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


@task(cache_policy=NO_CACHE)
def generate_recourse(
    pair: ChampionPair, table: pd.DataFrame, rows: np.ndarray, *, k: int, temperature: float, select: str, seed: int
) -> RecourseBatch:
    """Recourse from the champion generator for the applicants at `rows`, with its cost and h(x+)."""
    factuals = pair.encoder.transform(table.iloc[rows])
    if len(rows) == 0:  # everyone accepted: nothing to sample
        return RecourseBatch(rows=np.asarray(rows, dtype=int), recourse=pair.encoder.to_units(factuals),
                             cost=np.zeros(0), score=np.zeros(0))
    recourses = pair.genre.generate(factuals, k=k, temperature=temperature, select=select, seed=seed)
    # Judged as written: in the data's own units and precision (whole numbers stay whole).
    recourses = pair.encoder.snap_units(recourses)
    return RecourseBatch(rows=np.asarray(rows), recourse=pair.encoder.to_units(recourses),
                         cost=cost(factuals, recourses), score=pair.classifier.predict_proba(recourses))


@task(cache_policy=NO_CACHE)
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


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_recourse(ledger_url: str, issued: list[Issued], batch_id: str) -> list[int]:
    """Write one batch of issued recourse to the ledger in a single transaction."""
    ledger = Ledger(ledger_url)
    try:
        return ledger.record(issued, batch_id=batch_id)
    finally:
        ledger.dispose()


@task(cache_policy=NO_CACHE)
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


@task(cache_policy=NO_CACHE)
def write_results(results: pd.DataFrame, path: Path) -> Path:
    """Write the results CSV under a temp name, then rename it; text that would run as a formula is neutralised."""
    return write_csv(results, path)


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
