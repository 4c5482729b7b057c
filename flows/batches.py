"""The batches `make run` feeds the pipeline, each made by a documented, seeded transformation.

- **first batch**: the data set's training split as it is.
- **shifted batch** (a real covariate shift of held-out rows): from the third of the test rows set aside
  for it, draw `size` rows (`flows/main.py`: a tenth of the training split, at least 500, at most 3/4 of
  the rows set aside) without replacement with probability proportional to exp(-z), z the standardised
  first numeric feature (compas and adult: age), so the batch is younger than training; then move the
  next two mutable numeric features up by a quarter of their training range times U(0.5, 1), clipped to
  the training range (compas: priors_count and length_of_stay). Labels stay the real ones.
- **corrupted batch**: held-out rows with three kinds of damage the contract must catch: empty cells
  in a numeric column, an unknown category, and a value ten training ranges out of range.
- **applicants**: other held-out rows with an `applicant_id`, without their labels, given to the issue-recourse
  flow (half by the first champion, half by the second).
- **acted-on-recourse batch** (issue 13): training rows the champion rejects, moved three quarters of the
  way to the recourse its generator gives them, keeping their own real labels (`acted_on_recourse_batch`,
  `flows/promise_story.py`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from genre.core.datasets import DatasetSpec
from genre.core.encoding import observed_decimals


def partition_test(test: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Disjoint held-out parts: applicants, the source of the shifted batch, and the corrupted batch."""
    order = np.random.default_rng(seed).permutation(len(test))
    third = len(test) // 3
    parts = {"applicants": order[:third], "shift": order[third : 2 * third], "corrupt": order[2 * third :]}
    return {k: test.iloc[v].reset_index(drop=True) for k, v in parts.items()}


def shifted_batch(source: pd.DataFrame, train: pd.DataFrame, spec: DatasetSpec, seed: int, size: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numeric = [f for f in spec.features if f not in spec.categorical]
    lead = numeric[0]
    z = (source[lead] - train[lead].mean()) / (train[lead].std() or 1.0)
    weight = np.exp(-z.to_numpy(dtype=float))
    rows = rng.choice(len(source), size=min(size, len(source)), replace=False, p=weight / weight.sum())
    out = source.iloc[np.sort(rows)].reset_index(drop=True)
    for f in [f for f in numeric[1:] if f not in spec.immutable][:2]:
        lo, hi = train[f].min(), train[f].max()
        moved = out[f] + 0.25 * (hi - lo) * rng.uniform(0.5, 1.0, len(out))
        moved = moved.clip(lo, hi)
        # At the column's own precision: whole numbers stay whole even when the spec does not say `integer`.
        places = 0 if f in spec.integer else spec.decimals.get(f, observed_decimals(train[f].to_numpy(dtype=float)))
        out[f] = np.rint(moved).astype(np.int64) if places == 0 else moved.round(places)
    return out


def corrupted_batch(source: pd.DataFrame, train: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    out = source.astype(object).copy()
    numeric = [f for f in spec.features if f not in spec.categorical]
    out.loc[[1, 4, 9], numeric[0]] = ""  # nulls
    if spec.categorical:
        out.loc[[2, 7], next(iter(spec.categorical))] = "UNKNOWN"  # a category the encoder never saw
    f = numeric[-1]
    lo, hi = train[f].min(), train[f].max()
    out.loc[[3], f] = hi + 10 * (hi - lo)  # far out of range
    return out


def acted_on_recourse_batch(rejected: pd.DataFrame, recourse: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The performative batch (issue 13's story): applicants the champion rejected acted on (part of) the
    recourse its generator gave them, and their outcomes came in unchanged: each row is the profile they
    reached (`recourse`, the applicant's units) with the applicant's own real label (`rejected[spec.target]`).
    Recourse moves features, not the person behind them, so a classifier retrained on these rows moves its
    boundary out, past recourse already issued."""
    if len(recourse) != len(rejected):
        raise ValueError(f"{len(recourse)} recourses for {len(rejected)} rejected rows")
    out = recourse[list(spec.features)].reset_index(drop=True).copy()
    out[spec.target] = rejected[spec.target].to_numpy()
    return out
