"""Batch recourse in partitions (issue 12): one applicants file (CSV or Parquet) checked whole, cut into
Parquet partitions under `<GENRE_HOME>/batches/<batch id>/`, each partition answered by one task (in this
process, or on a Dask cluster through `prefect-dask`), its issued recourse written to the ledger in one
transaction, its results into a Parquet part; the parts are then joined into one results file.

An answer never depends on the partitioning: each rejected applicant's random numbers come from the run's
seed and a hash of its own row (`genre.core.serving.row_seeds`, as serving draws them), and every other step is
row-wise, in blocks of `BLOCK_ROWS` aligned on the whole file. A task pins torch to one thread, so n workers
use n cores and never oversubscribe them.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genre.core.classifier import one_thread, rejected_indices
from genre.core.datasets import DataError, DatasetSpec, coerce_frame, read_table
from genre.core.metrics import cost
from genre.core.serving import row_seeds
from tasks.data.csv_safe import write_csv
from tasks.ledger.db import Ledger
from tasks.serving.batch import ID_COLUMN
from tasks.retry import PermanentError

BLOCK_ROWS = 1_000  # rows answered together; partitions hold whole blocks (see `_answer_block`)
PARTITION_ROWS = 50 * BLOCK_ROWS
_PAIRS: dict[tuple, object] = {}  # per worker process: (tracking uri, versions) -> ChampionPair


@dataclass(frozen=True)
class Job:
    """What every partition task needs, all plain values (it travels to the Dask workers)."""

    dataset: str
    classifier_version: str
    generator_version: str
    tracking_uri: str
    ledger_url: str
    batch_id: str
    k: int
    temperature: float
    select: str
    seed: int
    whole_columns: tuple[str, ...] = ()  # float features shown as integers (decided on the whole file)
    real_ids: bool = True  # the file has an applicant_id column (row numbers are never honoured later)


def read_applicants_file(path: Path, spec: DatasetSpec) -> tuple[pd.DataFrame, list[str], bool]:
    """The spec's features, typed and checked (errors name file, row and column), each row's id, and whether
    the ids are the applicants' own (an `applicant_id` column) rather than row numbers."""
    if not path.is_file():
        raise PermanentError(f"applicants file not found: {path}")
    if path.suffix.lower() == ".parquet":
        raw = pd.read_parquet(path)
        missing = [c for c in spec.features if c not in raw.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; expected {list(spec.features)}", row=0,
                            column=missing[0])
        if raw.empty:
            raise DataError(path, "the file has no data rows", row=1, column=spec.features[0])
        table = coerce_frame(raw[list(spec.features)].astype(str), spec, source=str(path))
        ids = raw[ID_COLUMN].astype(str) if ID_COLUMN in raw.columns else None
    else:
        table = read_table(path, spec, require_target=False)
        ids = pd.read_csv(path, dtype=str, usecols=lambda c: c == ID_COLUMN, keep_default_na=False)
        ids = ids[ID_COLUMN] if ID_COLUMN in ids.columns else None
    if ids is None:  # without an id column, the data row number (from 1) names the applicant
        return table, [str(i + 1) for i in range(len(table))], False
    blank = ids.str.strip() == ""
    if blank.any():
        raise DataError(path, "empty applicant id", row=int(np.flatnonzero(blank.to_numpy())[0]) + 1, column=ID_COLUMN)
    return table, ids.tolist(), True


def partition_size(rows: int) -> int:
    """`rows` rounded up to whole blocks."""
    if rows < 1:
        raise ValueError(f"partition_rows must be >= 1, got {rows}")
    return -(-rows // BLOCK_ROWS) * BLOCK_ROWS


def write_partitions(table: pd.DataFrame, ids: list[str], folder: Path, rows: int) -> list[Path]:
    """Parquet partitions of `partition_size(rows)` applicants (id column first), in input order."""
    rows = partition_size(rows)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.concat([pd.Series(ids, name=ID_COLUMN), table.reset_index(drop=True)], axis=1)
    paths = []
    for i, start in enumerate(range(0, len(frame), rows)):
        path = folder / f"in-{i:05d}.parquet"
        frame.iloc[start:start + rows].to_parquet(path, index=False)
        paths.append(path)
    return paths


def remember(job: Job, pair) -> None:
    """The pair this process loaded already (the in-process engine then does not load it twice)."""
    _PAIRS[(job.tracking_uri, job.classifier_version, job.generator_version)] = pair


def _pair(job: Job):
    key = (job.tracking_uri, job.classifier_version, job.generator_version)
    if key not in _PAIRS:
        import mlflow

        from tasks.registry import client as registry
        from tasks.serving.batch import ChampionPair

        mlflow.set_tracking_uri(job.tracking_uri)
        mlflow.set_registry_uri(job.tracking_uri)
        os.environ["MLFLOW_TRACKING_URI"] = job.tracking_uri
        classifier, encoder = registry.load_classifier_version(job.classifier_version)
        _PAIRS[key] = ChampionPair(classifier, encoder, registry.load_generator_version(job.generator_version),
                                   job.classifier_version, job.generator_version)
    return _PAIRS[key]


def answer_partition(job: Job, part: Path) -> dict:
    """Recourse for one partition: ledger rows in one transaction, results in `out-<n>.parquet` beside it."""
    from tasks.serving.batch import RecourseBatch, ledger_entries, results_table

    started = time.monotonic()
    pair = _pair(job)
    frame = pd.read_parquet(part)
    ids, table = frame[ID_COLUMN].tolist(), frame.drop(columns=[ID_COLUMN])
    with one_thread():  # one core per worker; and the same kernels as every other engine
        blocks = [_answer_block(job, pair, table.iloc[s:s + BLOCK_ROWS]) for s in range(0, len(table), BLOCK_ROWS)]
    score = np.concatenate([b[0] for b in blocks])
    rows = np.concatenate([b[1] + s for b, s in zip(blocks, range(0, len(table), BLOCK_ROWS))]).astype(int)
    batch = RecourseBatch(rows=rows, recourse=pd.concat([b[2] for b in blocks], ignore_index=True),
                          cost=np.concatenate([b[3] for b in blocks]), score=np.concatenate([b[4] for b in blocks]))
    issued = ledger_entries(pair, pair.encoder.spec, table, ids, score, batch, real_ids=job.real_ids)
    ledger_ids = []
    if issued:
        ledger = Ledger(job.ledger_url)
        try:
            ledger_ids = ledger.record(issued, batch_id=job.batch_id)
        finally:
            ledger.dispose()
    shown = table.astype({c: np.int64 for c in job.whole_columns})
    results = results_table(ids, shown, score, batch, ledger_ids)
    out = part.with_name(part.name.replace("in-", "out-"))
    results.to_parquet(out, index=False)
    return {"part": str(out), "applicants": len(table), "rejected": len(rows), "issued": len(issued),
            "cost_sum": float(sum(i.cost for i in issued)), "ledger_ids": list(ledger_ids),
            "seconds": time.monotonic() - started}


def _answer_block(job: Job, pair, table: pd.DataFrame) -> tuple:
    """h(x), the rejected rows, their recourse (units), cost and h(x+) for one block of `BLOCK_ROWS` rows.

    Blocks start at multiples of BLOCK_ROWS of the whole file in every engine, so every matrix product sees
    the same rows in the same order: a float result can depend on the rows beside it (a kernel's tail), and
    an answer must not depend on the partitioning.
    """
    encoded = pair.encoder.transform(table)
    score = pair.classifier.predict_proba(encoded)
    rows = rejected_indices(score)
    if not len(rows):
        return score, rows, pair.encoder.to_units(encoded[:0]), np.zeros(0), np.zeros(0)
    factuals = encoded[rows]
    recourse = pair.genre.generate(factuals, k=job.k, temperature=job.temperature, select=job.select, seed=job.seed,
                                   row_seeds=row_seeds(table.iloc[rows]), threads=1)
    recourse = pair.encoder.snap_units(recourse)  # judged as written: the data's own units and precision
    return (score, rows, pair.encoder.to_units(recourse), cost(factuals, recourse),
            pair.classifier.predict_proba(recourse))


def join_results(parts: list[str], out_path: Path) -> Path:
    """One results file from the parts, in input order (CSV, or Parquet when `out_path` ends in .parquet)."""
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    if out_path.suffix.lower() == ".parquet":
        tmp = out_path.with_name(f".{out_path.name}.tmp")
        frame.to_parquet(tmp, index=False)
        return tmp.replace(out_path)
    return write_csv(frame, out_path)


def discard(job: Job, folder: Path) -> int:
    """After a failed partition: remove this batch's ledger rows (no applicant was given them) and its parts."""
    ledger = Ledger(job.ledger_url)
    try:
        removed = ledger.discard_batch(job.batch_id)
    finally:
        ledger.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    return removed
