"""Build a data set's Great Expectations 1.x suite from its `DatasetSpec` and training reference.

The suite is the data contract a batch must meet before it may join the training store. It is written
to `data_contracts/<name>.json` by `python -m data_contracts build --dataset NAME` and read back from
there by the ingest flow and the tests, so the file in the repo is the contract that gates the pipeline.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import great_expectations as gx
import pandas as pd
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from genre.core import files
from genre.core.datasets import DatasetSpec

SUITE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ContractPolicy:
    """How strict a contract is; stored in the suite's meta so a reader sees what built it."""

    # Numerics may go this share of the training range beyond the training min / max: new applicants
    # drift a little (ages go up), but a value far outside means a unit or entry error.
    range_tolerance: float = 0.1
    # Fewer rows than this is a truncated export, not a batch worth training on.
    min_rows: int = 20
    # Allowed share of rows in a repeated group, on top of the reference's own share (compas repeats
    # rows naturally: its features are few and coarse). A file appended twice doubles every row.
    duplicate_margin: float = 0.1


def numeric_columns(spec: DatasetSpec) -> list[str]:
    """Columns that must parse as numbers: every non-categorical feature, and the target."""
    return [f for f in spec.features if f not in spec.categorical] + [spec.target]


def duplicate_share(frame: pd.DataFrame) -> float:
    """Share of rows that belong to a group of identical rows (GX's compound-uniqueness semantics)."""
    return float(frame.duplicated(keep=False).mean()) if len(frame) else 0.0


def build_suite(spec: DatasetSpec, reference: pd.DataFrame, policy: ContractPolicy = ContractPolicy()) -> gx.ExpectationSuite:
    """One expectation per rule, each carrying its intent in `meta["intent"]`."""
    E = gx.expectations
    columns = spec.columns
    expectations: list = [
        E.ExpectTableColumnsToMatchSet(
            column_set=columns, exact_match=True,
            meta={"intent": "exactly the spec's columns: a missing one cannot be trained on, an extra one is an unreviewed change"},
        ),
        E.ExpectTableRowCountToBeBetween(
            min_value=policy.min_rows,
            meta={"intent": f"at least {policy.min_rows} rows: a shorter file is a truncated export"},
        ),
    ]
    max_dup = min(1.0, duplicate_share(reference[columns]) + policy.duplicate_margin)
    expectations.append(
        E.ExpectCompoundColumnsToBeUnique(
            column_list=columns, mostly=round(1.0 - max_dup, 4),
            meta={"intent": f"at most {max_dup:.1%} of rows in repeated groups (reference share + "
                            f"{policy.duplicate_margin:.0%}): more means a file appended twice"},
        )
    )
    for col in columns:
        expectations.append(
            E.ExpectColumnValuesToNotBeNull(
                column=col,
                meta={"intent": f"every '{col}' present"
                                + (" and a number (text reads as missing)" if col not in spec.categorical else "")},
            )
        )
    for col, domain in spec.categorical.items():
        expectations.append(
            E.ExpectColumnValuesToBeInSet(
                column=col, value_set=list(domain),
                meta={"intent": f"'{col}' is one of the categories the encoder and generator know"},
            )
        )
    for col in spec.features:
        if col in spec.categorical:
            continue
        lo, hi = float(reference[col].min()), float(reference[col].max())
        slack = policy.range_tolerance * (hi - lo)
        expectations.append(
            E.ExpectColumnValuesToBeBetween(
                column=col, min_value=lo - slack, max_value=hi + slack,
                meta={"intent": f"'{col}' within the training range [{lo:g}, {hi:g}] ± {policy.range_tolerance:.0%} "
                                f"of its width: further out is an entry or unit error"},
            )
        )
    expectations.append(
        E.ExpectColumnValuesToBeInSet(
            column=spec.target, value_set=[0, 1],
            meta={"intent": f"the target '{spec.target}' is a 0/1 label (1 = favourable)"},
        )
    )
    return gx.ExpectationSuite(
        name=f"{spec.name}-contract", expectations=expectations,
        meta={"dataset": spec.name, "policy": asdict(policy), "reference_rows": int(len(reference))},
    )


def suite_path(name: str, directory: Path | None = None) -> Path:
    return (directory or SUITE_DIR) / f"{name}.json"


def save_suite(suite: gx.ExpectationSuite, path: Path) -> Path:
    """Write the suite as stable, diff-friendly JSON (temp file then rename)."""
    data = suite.to_json_dict()
    data.pop("id", None)
    for e in data["expectations"]:
        e.pop("id", None)
    return files.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_suite(path: Path) -> gx.ExpectationSuite:
    data = json.loads(Path(path).read_text())
    expectations = [ExpectationConfiguration(**e).to_domain_obj() for e in data["expectations"]]
    return gx.ExpectationSuite(name=data["name"], expectations=expectations, meta=data.get("meta") or {})
