"""CSV files built from what users sent are opened in spreadsheets: a text cell that starts with `=`, `+`,
`-`, `@`, a tab or a carriage return would run as a formula there (CSV injection). As OWASP recommends,
such cells get a leading `'`, which spreadsheets show as text. Numbers stay numbers: a cell that is a
plain number ("-3", "+1.5e3") is left alone, and non-text cells are never touched."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from genre.core import files

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise(value):
    """The cell as it may safely be written: risky text gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells (in object or string columns) are neutralised; numeric columns as they were."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    out.columns = [neutralise(c) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write the neutralised frame atomically (a temporary name, then a rename). Lines end in CRLF (RFC 4180),
    so a cell holding a bare carriage return is quoted instead of splitting its row in two."""
    with files.atomic_path(path) as tmp:
        neutralised(frame).to_csv(tmp, index=False, lineterminator="\r\n")
    return Path(path)
