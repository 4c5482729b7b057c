"""Monitoring's ledger re-validation in partitions (issue 12): the ledger's recourse rows of one data set, cut
into id ranges, each judged again by the monitored classifier in one task (in this process or on Dask, see
`tasks.engine`); a task reads only its own range from the database.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func, select

from monitoring.inputs import ledger_still_valid
from tasks import engine
from tasks.ledger.db import Ledger, RecourseEntry

PARTITION_ROWS = 100_000
_CLASSIFIERS: dict[tuple, tuple] = {}  # per worker process: (tracking uri, version) -> (classifier, encoder)


@dataclass(frozen=True)
class Rescore:
    ledger_url: str
    dataset: str
    classifier_version: str
    tracking_uri: str


def id_ranges(ledger_url: str, dataset: str, rows: int) -> list[tuple[int, int]]:
    """Inclusive id ranges of at most `rows` ids covering the data set's recourse rows."""
    ledger = Ledger(ledger_url)
    try:
        with ledger.engine.connect() as conn:
            lo, hi = conn.execute(select(func.min(RecourseEntry.id), func.max(RecourseEntry.id))
                                  .where(RecourseEntry.dataset == dataset)).one()
    finally:
        ledger.dispose()
    return [] if lo is None else [(a, min(a + rows - 1, hi)) for a in range(lo, hi + 1, rows)]


def _classifier(job: Rescore):
    key = (job.tracking_uri, job.classifier_version)
    if key not in _CLASSIFIERS:
        import torch

        from tasks.registry import client as registry

        torch.set_num_threads(1)
        os.environ["MLFLOW_TRACKING_URI"] = job.tracking_uri
        _CLASSIFIERS[key] = registry.load_classifier_version(job.classifier_version)
    return _CLASSIFIERS[key]


@task(cache_policy=NO_CACHE)
def judge_range(job: Rescore, lo: int, hi: int) -> pd.DataFrame:
    """issued_by, still_valid for the recourse rows with lo <= id <= hi."""
    ledger = Ledger(job.ledger_url)
    try:
        with ledger.engine.connect() as conn:
            rows = conn.execute(select(RecourseEntry.classifier_version, RecourseEntry.recourse)
                                .where(RecourseEntry.dataset == job.dataset, RecourseEntry.id.between(lo, hi))
                                .order_by(RecourseEntry.id)).all()
    finally:
        ledger.dispose()
    entries = pd.DataFrame(rows, columns=["classifier_version", "recourse"])
    return ledger_still_valid(entries, *_classifier(job))


def rescore_ledger(job: Rescore, classifier, cluster: str | None, workers: int, rows: int = PARTITION_ROWS) -> pd.DataFrame:
    """Every recourse of the data set judged by `job.classifier_version` (whose loaded pair is `classifier`)."""
    _CLASSIFIERS[(job.tracking_uri, job.classifier_version)] = classifier
    ranges = id_ranges(job.ledger_url, job.dataset, rows)
    parts = engine.map_partitions(judge_range, [(job, lo, hi) for lo, hi in ranges], cluster, workers, "ledger-rescore")
    empty = ledger_still_valid(pd.DataFrame(), *classifier)
    return pd.concat([empty, *parts], ignore_index=True) if parts else empty
