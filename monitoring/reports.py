"""Evidently 0.7 report builders: data drift, prediction drift and recourse quality.

Each builder is `build_...(*, reference, current, ...)` on pandas frames and returns an Evidently snapshot
(`save_html`, `save_json`, `dict()`); `monitoring.export` writes and summarises them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.metrics import MeanValue, ValueDrift
from evidently.presets import DataDriftPreset
from evidently.tests import gte, lte

from genre.core.datasets import DatasetSpec
from monitoring.export import version_key
from monitoring.recourse_metrics import (
    AUDIT,
    LEDGER,
    LedgerStillValid,
    RecourseCost,
    RecoursePlausibility,
    RecourseValidity,
    StillValidUnder,
)

# The per-row recourse frame the recourse report reads; audit rows leave the ledger columns empty and back.
RECOURSE_COLUMNS = ["source", "issued_by", "cost", "valid", "plausible", "still_valid"]


@dataclass(frozen=True)
class RecourseThresholds:
    """Floors and ceilings the recourse report tests (a FAIL in the report is a breach)."""

    validity: float = 0.9
    plausibility: float = 0.8
    cost: float = 2.0  # mean L1 over d features in [0, 1]; the paper's GenRe costs 0.5 to 2.0
    ledger_still_valid: float = 0.8


def spec_definition(spec: DatasetSpec, *, with_target: bool = True) -> DataDefinition:
    """The Evidently column types of a data set's table, from its spec."""
    categorical = [f for f in spec.features if f in spec.categorical]
    if with_target:
        categorical.append(spec.target)
    numerical = [f for f in spec.features if f not in spec.categorical]
    return DataDefinition(numerical_columns=numerical, categorical_columns=categorical)


def _as_dataset(frame: pd.DataFrame, definition: DataDefinition, columns: list[str]) -> Dataset:
    frame = frame[columns].copy()
    for col in definition.categorical_columns or []:
        # Categories compare as strings: a 0/1 category read as int in one frame and str in another
        # would otherwise count as drift.
        frame[col] = frame[col].astype(str)
    return Dataset.from_pandas(frame, data_definition=definition)


def build_data_drift_report(
    *, reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec, drift_share: float = 0.5
):
    """Feature and target drift between two training tables (previous champion's vs the new one's).

    The preset tests each column (K-S / chi-squared or Wasserstein / Jensen-Shannon by size) and the share
    of drifted columns against `drift_share`.
    """
    with_target = spec.target in reference.columns and spec.target in current.columns
    definition = spec_definition(spec, with_target=with_target)
    columns = [*spec.features, *([spec.target] if with_target else [])]
    missing = {name: [c for c in columns if c not in f.columns] for name, f in (("reference", reference), ("current", current))}
    for name, cols in missing.items():
        if cols:
            raise ValueError(f"data drift: the {name} table lacks column(s) {cols}")
    report = Report([DataDriftPreset(columns=columns, drift_share=drift_share)], include_tests=True)
    return report.run(
        current_data=_as_dataset(current, definition, columns),
        reference_data=_as_dataset(reference, definition, columns),
    )


class DecisionFlipShare(SingleValueMetric):
    """Share of audit rows whose decision (score > 0.5) differs between the reference and current model."""


class DecisionFlipShareCalculation(SingleValueCalculation[DecisionFlipShare]):
    def calculate(self, context, current_data: Dataset, reference_data: Optional[Dataset]):
        if reference_data is None:
            raise ValueError("decision flips compare two models: pass the previous champion's scores as reference")
        cur = current_data.as_dataframe()["score"].to_numpy(dtype=np.float64)
        ref = reference_data.as_dataframe()["score"].to_numpy(dtype=np.float64)
        if cur.shape != ref.shape:
            raise ValueError(f"decision flips need the same audit rows in both frames ({len(ref)} vs {len(cur)})")
        return self.result(float(np.mean((cur > 0.5) != (ref > 0.5))))

    def display_name(self) -> str:
        return "Share of audit rows whose decision flipped"


def build_prediction_drift_report(
    *, reference: pd.DataFrame, current: pd.DataFrame, max_flip_share: float = 0.2
):
    """h_old vs h_new on the same fixed audit rows: score drift, acceptance rate, share of flipped decisions.

    Both frames hold a `score` column (P(y = 1 | x)), row i being the same audit applicant in both.
    """
    for name, frame in (("reference", reference), ("current", current)):
        if "score" not in frame.columns:
            raise ValueError(f"prediction drift: the {name} frame has no 'score' column")
    definition = DataDefinition(numerical_columns=["score", "accepted"])

    def prepared(frame: pd.DataFrame) -> Dataset:
        out = pd.DataFrame({"score": frame["score"].to_numpy(dtype=np.float64)})
        out["accepted"] = (out["score"] > 0.5).astype(int)  # a bool column crashes Dataset.from_pandas
        return Dataset.from_pandas(out, data_definition=definition)

    report = Report(
        [
            ValueDrift(column="score"),
            MeanValue(column="score"),
            MeanValue(column="accepted"),
            DecisionFlipShare(tests=[lte(max_flip_share)]),
        ],
        include_tests=True,
    )
    return report.run(current_data=prepared(current), reference_data=prepared(reference))


def build_recourse_report(
    *,
    reference: Optional[pd.DataFrame],
    current: pd.DataFrame,
    thresholds: RecourseThresholds = RecourseThresholds(),
):
    """Recourse validity, cost and plausibility on the audit set, and ledger recourses still valid by version.

    `current`: the champion's audit rows plus the ledger rows (columns `RECOURSE_COLUMNS`, `source` being
    'audit' or 'ledger'); `reference`: the previous champion's audit rows, or None for the first champion.
    """
    for name, frame in (("reference", reference), ("current", current)):
        if frame is not None and (missing := [c for c in RECOURSE_COLUMNS if c not in frame.columns]):
            raise ValueError(f"recourse report: the {name} frame lacks column(s) {missing}")
    metrics = [
        RecourseValidity(tests=[gte(thresholds.validity)]),
        RecourseCost(tests=[lte(thresholds.cost)]),
        RecoursePlausibility(tests=[gte(thresholds.plausibility)]),
    ]
    ledger = current[current["source"] == LEDGER]
    if len(ledger):
        metrics.append(LedgerStillValid(tests=[gte(thresholds.ledger_still_valid)]))
        for version in sorted(ledger["issued_by"].astype(str).unique(), key=version_key):
            metrics.append(LedgerStillValid(issued_by=version, tests=[gte(thresholds.ledger_still_valid)]))
    definition = DataDefinition(
        numerical_columns=["cost", "valid", "plausible", "still_valid"], categorical_columns=["source", "issued_by"]
    )

    def prepared(frame: pd.DataFrame) -> Dataset:
        frame = frame[RECOURSE_COLUMNS].copy()
        frame["issued_by"] = frame["issued_by"].fillna("").astype(str)
        for col in ("cost", "valid", "plausible", "still_valid"):
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(np.float64)
        return Dataset.from_pandas(frame.reset_index(drop=True), data_definition=definition)

    report = Report(metrics, include_tests=True)
    # Audit rows leave the ledger columns empty and back; Evidently's column statistics then divide 0 by 0
    # for an all-empty column. That statistic is not used here, so the warning is noise.
    with np.errstate(invalid="ignore", divide="ignore"):
        return report.run(
            current_data=prepared(current), reference_data=None if reference is None else prepared(reference)
        )


def recourse_frame(
    *,
    cost: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    plausible: np.ndarray | None = None,
    issued_by: np.ndarray | None = None,
    still_valid: np.ndarray | None = None,
) -> pd.DataFrame:
    """Audit rows (cost, valid, plausible) followed by ledger rows (issued_by, still_valid) in one frame."""
    parts = []
    if cost is not None:
        parts.append(pd.DataFrame({
            "source": AUDIT, "issued_by": "", "cost": np.asarray(cost, np.float64),
            "valid": np.asarray(valid, np.float64), "plausible": np.asarray(plausible, np.float64),
            "still_valid": np.nan,
        }))
    if issued_by is not None and len(issued_by):
        parts.append(pd.DataFrame({
            "source": LEDGER, "issued_by": np.asarray(issued_by).astype(str), "cost": np.nan, "valid": np.nan,
            "plausible": np.nan, "still_valid": np.asarray(still_valid, np.float64),
        }))
    if not parts:
        return pd.DataFrame(columns=RECOURSE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[RECOURSE_COLUMNS]


def build_validity_over_time_report(history: pd.DataFrame, *, floor: float = 0.95):
    """Validity over time, every version on one report: for each issuing classifier version, the share of its
    recourse still valid under each champion that judged it (`Ledger.validity_history` rows: monitored_version,
    issued_by, n, still_valid). Each (issuing, judging) pair is one metric, tested against `floor`
    (1 - the commitment gate's `max_voided`). The per-recourse rows are rebuilt from the counts exactly:
    round(share * n) valid and the rest not."""
    if history.empty:
        raise ValueError("validity over time: no monitoring run has judged any issued recourse yet")
    parts, metrics = [], []
    for row in history.itertuples(index=False):
        valid = int(round(float(row.still_valid) * int(row.n)))
        parts.append(pd.DataFrame({"issued_by": str(row.issued_by), "judged_by": str(row.monitored_version),
                                   "still_valid": [1.0] * valid + [0.0] * (int(row.n) - valid)}))
    frame = pd.concat(parts, ignore_index=True)
    pairs = sorted({(str(r.issued_by), str(r.monitored_version)) for r in history.itertuples(index=False)},
                   key=lambda p: (version_key(p[0]), version_key(p[1])))
    metrics = [StillValidUnder(issued_by=i, judged_by=j, tests=[gte(floor)]) for i, j in pairs]
    definition = DataDefinition(numerical_columns=["still_valid"], categorical_columns=["issued_by", "judged_by"])
    report = Report(metrics, include_tests=True)
    return report.run(current_data=Dataset.from_pandas(frame, data_definition=definition), reference_data=None)
