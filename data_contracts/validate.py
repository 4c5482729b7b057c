"""Check a CSV batch against its contract and explain every failure by column, expectation and row.

Batches are read as strings so nothing is lost to pandas' guessing: numerics are then parsed, and a cell
that does not parse becomes missing, which the contract's not-null expectation reports; the summary shows
the raw text so a reader sees "'abc' is not a number" rather than a bare null.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from data_contracts.readable import read_csv_text
from data_contracts.suite import numeric_columns
from genre.core.datasets import DataError, DatasetSpec, canonical_category, coerce_frame

MISSING = {"", "nan", "NaN", "NA", "None", "null", "NULL"}
MAX_EXAMPLES = 5
READABLE = "readable CSV"
# Whole-file causes first: they explain the per-column failures that follow from them.
ORDER = {READABLE: 0, "expect_table_columns_to_match_set": 1, "expect_table_row_count_to_be_between": 2,
         "expect_compound_columns_to_be_unique": 3}


@dataclass
class ContractReport:
    """Outcome of one batch: pass/fail, per-expectation failures with examples, and GX's own result."""

    file: str
    rows: int
    success: bool
    failures: list[dict] = field(default_factory=list)
    gx_result: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"file": self.file, "rows": self.rows, "success": self.success, "failures": self.failures,
                "gx_result": self.gx_result}

    @property
    def root_cause(self) -> str | None:
        """The first failure (whole-file causes first) in one line; None when the batch passed."""
        return _one_line(self.failures[0], self.file) if self.failures else None

    def summary(self) -> str:
        """Readable Markdown: the root cause, then one section per failed expectation."""
        unreadable = bool(self.failures) and self.failures[0]["expectation"] == READABLE
        size = "not readable as CSV" if unreadable else f"{self.rows} rows"
        head = f"# Contract {'passed' if self.success else 'FAILED'}: {self.file} ({size})\n"
        lines = [head]
        if self.root_cause:
            lines += [f"**Root cause**: {self.root_cause}", ""]
        for f in self.failures:
            where = f"column `{f['column']}`" if f.get("column") else "table"
            count = f" — {f['unexpected_count']} of {f['element_count']} rows" if f.get("unexpected_count") is not None else ""
            lines.append(f"## {where}: {f['expectation']}{count}")
            lines.append(f"intent: {f['intent']}")
            if f.get("observed") is not None:
                lines.append(f"observed: {f['observed']}")
            if f.get("details"):
                lines.append(f"details: {f['details']}")
            for ex in f.get("examples", []):
                lines.append(f"- row {ex['row']} (line {ex['row'] + 1}): {ex['value']}")
            lines.append("")
        return "\n".join(lines)


def read_raw(path: Path) -> pd.DataFrame:
    """Every cell as the string in the file; a file that is not readable CSV raises `Unreadable` naming it."""
    return read_csv_text(path)


def unreadable_report(path: Path, exc: DataError) -> ContractReport:
    """The report of a file that could not be read as CSV at all: one failure, its reason."""
    return ContractReport(file=str(path), rows=0, success=False, failures=[{
        "column": exc.column, "expectation": READABLE,
        "intent": "UTF-8 text, comma-separated, one header, every row as wide as the header",
        "observed": str(exc), "examples": [], "reason": getattr(exc, "reason", str(exc)),
    }])


def _one_line(f: dict, file: str) -> str:
    """A failure as one sentence that starts with where it is: file, row (line), column."""
    if f["expectation"] == READABLE or f["expectation"].startswith("genre.core.datasets"):
        return f["observed"] if f["expectation"] == READABLE else f["examples"][0]["value"]
    count = (f" ({f['unexpected_count']} of {f['element_count']} rows)"
             if f.get("unexpected_count") is not None else "")
    why = f"{f['expectation']}{count}: {f['intent']}" if f.get("intent") else f"{f['expectation']}{count}"
    if f.get("column") and f.get("examples"):
        ex = f["examples"][0]
        return f"file {file}, row {ex['row']} (line {ex['row'] + 1}), column '{f['column']}': {ex['value']} — {why}"
    mismatched = (f.get("details") or {}).get("mismatched") if isinstance(f.get("details"), dict) else None
    if mismatched:
        return (f"file {file}: the columns do not match the contract: missing {mismatched.get('missing') or []}, "
                f"unexpected {mismatched.get('unexpected') or []} — {why}")
    observed = f"observed {f['observed']} — " if f.get("observed") is not None else ""
    where = f"file {file}, column '{f['column']}'" if f.get("column") else f"file {file}"
    return f"{where}: {observed}{why}"


def typed_view(raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The frame GX checks: missing spellings -> None, numerics parsed (text -> NaN), 0/1 categories canonical."""
    numeric = set(numeric_columns(spec))
    out = {}
    for col in raw.columns:
        values = raw[col].astype(str).str.strip()
        values = values.where(~values.isin(MISSING), None)
        if col in numeric:
            out[col] = pd.to_numeric(values, errors="coerce")
        elif col in spec.categorical:
            out[col] = values.map(lambda v: v if v is None else canonical_category(v, spec.categorical[col]))
        else:
            out[col] = values
    return pd.DataFrame(out, index=raw.index)


class ContractChecker:
    """Holds one ephemeral GX context; `check` validates a raw string frame against the suite."""

    def __init__(self, suite: gx.ExpectationSuite, spec: DatasetSpec):
        self.spec = spec
        self._ctx = gx.get_context(mode="ephemeral")
        self._ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = (
            self._ctx.data_sources.add_pandas("batches").add_dataframe_asset("batch")
            .add_batch_definition_whole_dataframe("whole")
        )
        self.suite = self._ctx.suites.add(suite)
        self._definition = gx.ValidationDefinition(name=f"{suite.name}-check", data=batch, suite=self.suite)

    def check(self, raw: pd.DataFrame, source: str) -> ContractReport:
        view = typed_view(raw, self.spec).reset_index(drop=True)
        result = self._definition.run(batch_parameters={"dataframe": view}, result_format={"result_format": "COMPLETE"})
        # A column the file lacks fails every per-column expectation too; the column-set failure names it once.
        failures = [self._explain(r, raw) for r in result.results if not r.success
                    and r.expectation_config.kwargs.get("column") in (None, *raw.columns)]
        failures.sort(key=lambda f: ORDER.get(f["expectation"], len(ORDER)))
        report = ContractReport(file=source, rows=len(raw), success=bool(result.success), failures=failures,
                                gx_result=_jsonable(result.to_json_dict()))
        if report.success:
            # The contract has no whole-number rule; the library's typing is the last word on that.
            try:
                coerce_frame(raw[self.spec.columns], self.spec, source=source)
            except DataError as exc:
                report.success = False
                report.failures.append({
                    "column": exc.column, "expectation": "genre.core.datasets.coerce_frame", "intent": "typed as the spec says",
                    "unexpected_count": 1, "element_count": len(raw), "examples": [{"row": exc.row, "value": str(exc)}],
                })
        return report

    def _explain(self, r, raw: pd.DataFrame) -> dict:
        cfg = r.expectation_config
        res = r.result or {}
        column = cfg.kwargs.get("column")
        out = {
            "column": column, "expectation": cfg.type, "intent": (cfg.meta or {}).get("intent", ""),
            "unexpected_count": res.get("unexpected_count"), "element_count": res.get("element_count"),
            "observed": _jsonable(res.get("observed_value")), "details": _jsonable(res.get("details")),
            "examples": [],
        }
        if r.exception_info and r.exception_info.get("raised_exception"):
            out["observed"] = r.exception_info.get("exception_message")
        cols = [column] if column else cfg.kwargs.get("column_list") or []
        for idx in (res.get("unexpected_index_list") or [])[:MAX_EXAMPLES]:
            if isinstance(idx, dict):  # GX gives dicts when an id column is configured
                idx = next(iter(idx.values()))
            cells = {c: raw.iloc[int(idx)][c] for c in cols if c in raw.columns}
            value = (repr(next(iter(cells.values()))) if len(cells) == 1 else json.dumps(cells))
            if column and column in numeric_columns(self.spec) and cfg.type.endswith("not_be_null"):
                value = "empty" if raw.iloc[int(idx)][column].strip() in MISSING else f"{value} is not a number"
            out["examples"].append({"row": int(idx) + 1, "value": value})
        return out


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: None if isinstance(o, float) and np.isnan(o) else str(o)))
