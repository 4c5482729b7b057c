"""Recourse on demand: one answer per applicant row, in the applicant's own units.

`answer(frame, genre)` is what the served model (`genre-recourse`), the `genre recourse` command and the
HTTP endpoint all call. Each row gets a `status`:

- `ok`: h(x) <= 0.5 and GenRe found a recourse the classifier accepts (h(x+) > 0.5);
- `already_favourable`: h(x) > 0.5, nothing to change (the recourse is the factual, cost 0);
- `no_valid_recourse`: none of the k samples is accepted; `probability` is the best sample's h;
- `invalid_input`: the row cannot be read (`reason` names the column and the value).

Immutable features never change and increase-only / decrease-only features never move the wrong way
(`monotone=True` masks the wrong-side bins before sampling). A row's random numbers come from a hash of
its own values, so an applicant gets the same recourse alone or in any batch, from the CLI or over HTTP.
Every value is a str, int, float or None (never NaN), so the frame serialises to strict JSON.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from genre.core.classifier import rejects
from genre.core.datasets import DataError, DatasetSpec, coerce_frame
from genre.core.metrics import cost as recourse_cost

OK, FAVOURABLE, NO_RECOURSE, INVALID = "ok", "already_favourable", "no_valid_recourse", "invalid_input"
STATUSES = (OK, FAVOURABLE, NO_RECOURSE, INVALID)
# Numeric inputs may lie this share of the training range outside it (the data contracts' tolerance);
# further out the models extrapolate and the answer would mean nothing.
RANGE_TOLERANCE = 0.1
# Served recourse respects the spec's increase-only / decrease-only features unless a caller says otherwise.
MONOTONE = True


class MissingColumns(ValueError):
    """The request lacks feature columns: it fails as a whole (no row can be answered)."""


def answer_columns(spec: DatasetSpec) -> list[str]:
    """The answer frame's columns, in order."""
    return ["status", "reason", *spec.features, "cost", "score", "probability", "changed"]


def check_columns(frame: pd.DataFrame, spec: DatasetSpec) -> None:
    missing = [f for f in spec.features if f not in frame.columns]
    if missing:
        raise MissingColumns(f"missing column(s) {missing}; a request needs every feature of data set "
                             f"'{spec.name}': {list(spec.features)}")


def read_rows(frame: pd.DataFrame, encoder) -> tuple[pd.DataFrame, list[str | None]]:
    """Typed rows (spec order) and, per row, None or the reason it cannot be read.

    The whole frame is checked at once; only when that fails is each row checked alone, so one bad row
    costs the others nothing but the second pass.
    """
    spec = encoder.spec
    check_columns(frame, spec)
    raw = frame[list(spec.features)].reset_index(drop=True)
    try:
        typed = coerce_frame(raw, spec, source="request")
        reasons: list[str | None] = [None] * len(raw)
    except DataError:
        typed, reasons = _rows_one_by_one(raw, spec)
    return typed, _out_of_range(typed, raw, reasons, encoder)


def _rows_one_by_one(raw: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, list[str | None]]:
    rows, reasons = [], []
    for i in range(len(raw)):
        try:
            rows.append(coerce_frame(raw.iloc[[i]], spec, source="request").astype(object))
            reasons.append(None)
        except DataError as exc:
            rows.append(raw.iloc[[i]].astype(object))
            reasons.append(_reason(exc))
    return pd.concat(rows).reset_index(drop=True), reasons


def _reason(exc: DataError) -> str:
    """The DataError's message without the file/row prefix: "column 'race': unknown category 'X' ..."."""
    text = str(exc)
    head = f"column '{exc.column}': "
    return head + text.split(head, 1)[1] if exc.column and head in text else text


def _out_of_range(typed: pd.DataFrame, raw: pd.DataFrame, reasons: list[str | None], encoder) -> list[str | None]:
    """Reasons, with readable rows whose numeric value lies too far outside the training range marked (quoting
    the value as sent, not as typed)."""
    spec = encoder.spec
    cols = [j for j, f in enumerate(spec.features) if f not in spec.categorical]
    good = np.flatnonzero([r is None for r in reasons])
    if not cols or not len(good):
        return reasons
    values = typed.iloc[good, cols].to_numpy(dtype=np.float64)
    lo, span = encoder.min_[cols], encoder.range_[cols]
    outside = (values < lo - RANGE_TOLERANCE * span) | (values > lo + span + RANGE_TOLERANCE * span)
    reasons = list(reasons)
    for r, c in zip(*np.nonzero(outside)):
        i, j = good[r], cols[c]
        if reasons[i] is None:  # the first offending column names the row's problem
            f = spec.features[j]
            reasons[i] = (f"column '{f}': '{str(raw.iat[i, j]).strip()}' is outside the range the models were trained on "
                          f"[{_plain(encoder.min_[j])}, {_plain(encoder.min_[j] + encoder.range_[j])}] "
                          f"(by more than {RANGE_TOLERANCE:.0%} of it)")
    return reasons


def row_seeds(typed: pd.DataFrame) -> np.ndarray:
    """(n,) uint64: a stable hash of each row's values, the seed of its own random numbers."""
    out = np.zeros(len(typed), dtype=np.uint64)
    # Plain tuples, not `astype(str)`: building a str frame costs ~20 ms even for one row.
    for i, values in enumerate(typed.itertuples(index=False, name=None)):
        digest = hashlib.sha256("\x1f".join(map(str, values)).encode()).digest()
        out[i] = int.from_bytes(digest[:8], "little")
    return out


def answer(frame: pd.DataFrame, genre, *, k: int = 10, temperature: float = 0.1, select: str = "max_prob",
           seed: int = 0, monotone: bool = MONOTONE) -> pd.DataFrame:
    """One answer row per input row (same order): see the module docstring for the columns.

    `genre` is a `genre.core.sampler.GenRe` (its classifier is the h that judges the rows). Raises
    `MissingColumns` when a feature column is absent; a bad value only marks its own row.
    """
    return answer_rows(frame, genre, k=k, temperature=temperature, select=select, seed=seed, monotone=monotone)[0]


def answer_rows(frame: pd.DataFrame, genre, *, k: int = 10, temperature: float = 0.1, select: str = "max_prob",
                seed: int = 0, monotone: bool = MONOTONE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`answer`'s frame and the rows as read (spec columns, typed; an unreadable row as sent), index 0..n-1.

    The served model hands the typed rows on to the ledger, which stores each factual in these units, so a
    request is read once rather than twice."""
    spec, encoder, h = genre.spec, genre.encoder, genre.classifier
    typed, reasons = read_rows(frame, encoder)
    n = len(typed)
    out = {c: [None] * n for c in answer_columns(spec)}
    out["status"] = [INVALID if r else None for r in reasons]
    out["reason"] = list(reasons)
    good = np.array([r is None for r in reasons], dtype=bool)
    idx = np.flatnonzero(good)
    if len(idx):
        factual_rows = typed.iloc[idx].reset_index(drop=True)
        encoded = encoder.transform(factual_rows)
        score = h.predict_proba(encoded)
        rejected = rejects(score)
        recourse = encoded.copy()
        if rejected.any():
            recourse[rejected] = genre.generate(
                encoded[rejected], k=k, temperature=temperature, select=select, seed=seed, monotone=monotone,
                row_seeds=row_seeds(factual_rows[rejected]))
            # Judged as written: the data's own units and precision (whole numbers stay whole).
            recourse[rejected] = encoder.snap_units(recourse[rejected])
        prob = np.where(rejected, h.predict_proba(recourse), score)
        cost = recourse_cost(encoded, recourse)  # the evaluation's L1 (float64), as batch recourse stores it
        table = encoder.unit_columns(recourse)
        factual_units = encoder.in_unit_columns(factual_rows)
        _fill_columns(out, spec, idx, rejected, prob, cost, score, factual_units, table)
    # object columns: integers stay ints and a missing value stays None (a float column would make NaN).
    return pd.DataFrame({c: pd.Series(out[c], dtype=object) for c in answer_columns(spec)}), typed


def _fill_columns(out: dict, spec: DatasetSpec, idx: np.ndarray, rejected: np.ndarray, prob: np.ndarray,
                  cost: np.ndarray, score: np.ndarray, factual_rows: dict[str, np.ndarray],
                  table: dict[str, np.ndarray]) -> None:
    """The readable rows' answers, a column at a time (row by row, pandas cost ~0.5 ms a row)."""
    ok = rejected & ~rejects(prob)  # h accepts the recourse: the same threshold that rejected the factual
    status = np.where(~rejected, FAVOURABLE, np.where(ok, OK, NO_RECOURSE))
    shown = ~rejected | ok  # no_valid_recourse rows show no values
    moved = np.zeros((len(idx), len(spec.features)), dtype=bool)
    for j, f in enumerate(spec.features):
        factual, recourse = factual_rows[f], table[f]
        values = np.where(rejected, recourse, factual).tolist()  # tolist: Python ints, floats and str
        moved[:, j] = factual.astype(str) != recourse.astype(str)  # `changed`: differs in the applicant's units
        for pos, i in enumerate(idx):
            out[f][i] = values[pos] if shown[pos] else None
    for pos, i in enumerate(idx):
        out["status"][i] = str(status[pos])
        out["score"][i] = float(score[pos])
        out["probability"][i] = float(prob[pos])
        if not rejected[pos]:
            out["cost"][i], out["changed"][i] = 0.0, []
        elif ok[pos]:
            out["cost"][i] = float(cost[pos])
            out["changed"][i] = [f for f, m in zip(spec.features, moved[pos]) if m]


def _plain(value) -> object:
    """numpy scalars to Python ones (JSON-ready); whole floats of integer features stay ints."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value
