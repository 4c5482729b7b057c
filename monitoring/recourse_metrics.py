"""Custom Evidently 0.7 metrics for recourse, so that recourse quality sits in a report beside the drift.

They read a per-row recourse frame (see `monitoring.reports.RECOURSE_COLUMNS`): audit rows carry the
champion generator's recourse on the fixed audit set (`cost`, `valid`, `plausible`); ledger rows carry one
issued recourse each (`issued_by`, `still_valid`). Thresholds are attached by the caller as `tests=[...]`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from evidently.core.datasets import Dataset
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

AUDIT, LEDGER = "audit", "ledger"


def _mean(data: Optional[Dataset], column: str, source: str, issued_by: Optional[str] = None) -> Optional[float]:
    """Mean of `column` over the rows of one source (and issuing version); None when there are none."""
    if data is None:
        return None
    frame = data.as_dataframe()
    rows = frame["source"] == source
    if issued_by is not None:
        rows &= frame["issued_by"].astype(str) == str(issued_by)
    values = frame.loc[rows, column].to_numpy(dtype=np.float64)
    return float(values.mean()) if len(values) else None


class RecourseValidity(SingleValueMetric):
    """Share of audit recourses that the champion classifier accepts (h(x+) > 0.5)."""


class RecourseCost(SingleValueMetric):
    """Mean cost of audit recourses: L1 distance in the encoded [0, 1] space, summed over features."""


class RecoursePlausibility(SingleValueMetric):
    """Share of audit recourses that the LOF plausibility scorer calls inliers."""


class LedgerStillValid(SingleValueMetric):
    """Share of issued recourses (all, or those one classifier version issued) the champion still accepts."""

    issued_by: Optional[str] = None


def _audit(calculation: SingleValueCalculation, column: str, current_data: Dataset, reference_data: Optional[Dataset]):
    current = _mean(current_data, column, AUDIT)
    if current is None:
        raise ValueError(f"{calculation.display_name()}: the current recourse frame has no audit rows")
    reference = _mean(reference_data, column, AUDIT)
    return calculation.result(current), None if reference is None else calculation.result(reference)


# Evidently binds each calculation to its metric through the generic parameter, one class per metric.
class RecourseValidityCalculation(SingleValueCalculation[RecourseValidity]):
    def calculate(self, context, current_data: Dataset, reference_data: Optional[Dataset]):
        return _audit(self, "valid", current_data, reference_data)

    def display_name(self) -> str:
        return "Recourse validity under the champion classifier"


class RecourseCostCalculation(SingleValueCalculation[RecourseCost]):
    def calculate(self, context, current_data: Dataset, reference_data: Optional[Dataset]):
        return _audit(self, "cost", current_data, reference_data)

    def display_name(self) -> str:
        return "Recourse cost (mean L1 in the encoded space)"


class RecoursePlausibilityCalculation(SingleValueCalculation[RecoursePlausibility]):
    def calculate(self, context, current_data: Dataset, reference_data: Optional[Dataset]):
        return _audit(self, "plausible", current_data, reference_data)

    def display_name(self) -> str:
        return "Recourse plausibility (share of LOF inliers)"


class LedgerStillValidCalculation(SingleValueCalculation[LedgerStillValid]):
    def calculate(self, context, current_data: Dataset, reference_data: Optional[Dataset]):
        current = _mean(current_data, "still_valid", LEDGER, self.metric.issued_by)
        if current is None:
            who = f"version {self.metric.issued_by}" if self.metric.issued_by is not None else "any version"
            raise ValueError(f"the ledger frame has no recourse issued by {who}")
        # The reference frame is the previous champion's audit run: it has no ledger rows to compare.
        return self.result(current), None

    def display_name(self) -> str:
        if self.metric.issued_by is None:
            return "Ledger recourses still valid (all issuing versions)"
        return f"Ledger recourses issued by classifier v{self.metric.issued_by} still valid"


class StillValidUnder(SingleValueMetric):
    """Validity over time: share of the recourse one classifier version issued that a later champion
    (`judged_by`) still accepts. Reads a frame of `issued_by`, `judged_by`, `still_valid` rows."""

    issued_by: str
    judged_by: str


class StillValidUnderCalculation(SingleValueCalculation[StillValidUnder]):
    def calculate(self, context, current_data: Dataset, reference_data: Optional[Dataset]):
        frame = current_data.as_dataframe()
        rows = ((frame["issued_by"].astype(str) == str(self.metric.issued_by))
                & (frame["judged_by"].astype(str) == str(self.metric.judged_by)))
        values = frame.loc[rows, "still_valid"].to_numpy(dtype=np.float64)
        if not len(values):
            raise ValueError(f"no recourse issued by v{self.metric.issued_by} was judged by v{self.metric.judged_by}")
        return self.result(float(values.mean()))

    def display_name(self) -> str:
        return (f"Recourse issued by classifier v{self.metric.issued_by} still valid under champion "
                f"v{self.metric.judged_by}")
