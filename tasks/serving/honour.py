"""Honouring issued recourse at serving time (issue 13): a promise made is kept.

When an applicant whose recourse is in the ledger comes back with a profile that meets it, the served model
answers `accepted_by_commitment` (naming the ledger entries and the classifier/generator versions that
issued them) even if the current champion would refuse. A profile meets a recourse when

- every numeric feature the recourse changed is at or past the recommended value, in the recommended
  direction (short of it by at most `tolerance` x the feature's training range);
- every categorical feature the recourse changed equals the recommended category;
- every immutable feature is unchanged (numeric ones within the same tolerance).

Features the recourse left alone may be anything. Identity is the request's `applicant_id`: a row without
one (or a blank one) is never honoured, nor is a ledger entry recorded under a row number or a generated id
(`real_id` false). The lookup is one indexed query per request, for the rows the champion refuses only.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from genre.core.datasets import DataError, DatasetSpec, coerce_frame
from genre.core.serving import NO_RECOURSE, OK

ACCEPTED_BY_COMMITMENT = "accepted_by_commitment"
HONOUR_SWITCH = "GENRE_HONOUR_RECOURSE"  # on/off over the config's commitment.honour
log = logging.getLogger(__name__)


def real_ids(frame: pd.DataFrame, column: str) -> list[str | None]:
    """Per row, the applicant id the request gave, or None (no column, null or blank)."""
    if column not in frame.columns:
        return [None] * len(frame)
    out = []
    for value in frame[column].tolist():
        text = None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        out.append(text if text and text.lower() not in {"nan", "none", "null"} else None)
    return out


def meets(profile: dict, factual: dict, recourse: dict, spec: DatasetSpec, ranges: dict[str, float],
          tolerance: float) -> bool:
    """Whether `profile` (applicant's units) meets a recourse issued for `factual` (see the module docstring)."""
    for f in spec.features:
        now, before, asked = profile[f], factual[f], recourse[f]
        if f in spec.categorical:
            if f in spec.immutable and str(now) != str(before):
                return False
            if str(asked) != str(before) and str(now) != str(asked):
                return False
            continue
        slack = tolerance * ranges[f]
        now, before, asked = float(now), float(before), float(asked)
        if f in spec.immutable:
            if abs(now - before) > slack:
                return False
        elif asked > before and now < asked - slack:
            return False
        elif asked < before and now > asked + slack:
            return False
    return True


def honour(model_input: pd.DataFrame, out: pd.DataFrame, ids: list[str | None], spec: DatasetSpec, encoder,
           lookup, tolerance: float) -> dict[int, list[int]]:
    """Turn the refused rows (status ok / no_valid_recourse) of returning applicants who met an issued recourse
    into `accepted_by_commitment` answers, in place; row -> the ledger ids honoured.

    `lookup(ids)` returns `Ledger.issued_to`'s frame for those ids (one query); it is called once, and only
    when some refused row has a real id.
    """
    refused = [i for i, s in enumerate(out["status"]) if s in (OK, NO_RECOURSE) and ids[i] is not None]
    if not refused:
        return {}
    issued = lookup([ids[i] for i in refused])
    if issued.empty:
        return {}
    by_id = {k: g for k, g in issued.groupby("applicant_id")}
    candidates = [i for i in refused if ids[i] in by_id]
    if not candidates:
        return {}
    try:
        typed = coerce_frame(model_input.iloc[candidates][list(spec.features)].reset_index(drop=True), spec,
                             source="request")
    except DataError:  # a row serving answered cannot be unreadable; never honour what cannot be read
        return {}
    ranges = {f: float(encoder.range_[j]) for j, f in enumerate(spec.features) if f not in spec.categorical}
    honoured: dict[int, list[int]] = {}
    for pos, i in enumerate(candidates):
        profile = typed.iloc[pos].to_dict()
        met = [e for e in by_id[ids[i]].itertuples(index=False)
               if meets(profile, e.factual, e.recourse, spec, ranges, tolerance)]
        if met:
            honoured[i] = [int(e.id) for e in met]
            _answer_honoured(out, i, profile, met, spec)
    return honoured


def _answer_honoured(out: pd.DataFrame, i: int, profile: dict, met: list, spec: DatasetSpec) -> None:
    latest = met[-1]
    names = ", ".join(f"#{e.id} (classifier v{e.classifier_version} + generator v{e.generator_version}, "
                      f"{str(e.requested_at)[:10]})" for e in met)
    out.at[i, "status"] = ACCEPTED_BY_COMMITMENT
    out.at[i, "reason"] = (f"meets the recourse issued in ledger entry {names}; accepted on that commitment "
                           f"(the current champion scores {out.at[i, 'score']:.3f})")
    for f in spec.features:
        value = profile[f]
        out.at[i, f] = value.item() if hasattr(value, "item") else value
    out.at[i, "cost"], out.at[i, "changed"], out.at[i, "probability"] = 0.0, "[]", out.at[i, "score"]
    out.at[i, "commitment"] = json.dumps({
        "ledger_ids": [int(e.id) for e in met],
        "issued_by": [{"classifier_version": str(e.classifier_version), "generator_version": str(e.generator_version)}
                      for e in met],
        "latest": int(latest.id)})
