"""Can this file be read as the contract's CSV at all? UTF-8 text, comma-separated, every row as wide as the
header. Anything else raises `Unreadable`, whose message names the file, the row and line, the column, and
quotes the offending bytes or text, so the ingest flow can quarantine the file with a readable reason
instead of failing on a `UnicodeDecodeError` or a pandas `ParserError`.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from genre.core.datasets import DataError

# Signatures of binary formats people save by mistake under a .csv name.
MAGIC = {b"\x1f\x8b": "gzip-compressed data", b"PK\x03\x04": "a ZIP archive (an .xlsx workbook is one)",
         b"PAR1": "a Parquet file", b"\xd0\xcf\x11\xe0": "an old Excel (.xls) workbook", b"%PDF": "a PDF document"}
OTHER_DELIMITERS = (";", "\t", "|")
SHOWN = 60  # characters of a cell or header quoted in a message


class Unreadable(DataError):
    """The file is not the contract's CSV; `str(exc)` says where and why."""

    def __init__(self, file, message: str, *, row: int | None = None, line: int | None = None,
                 column: str | None = None):
        self.line = line
        super().__init__(file, message, row=row, column=column)
        where = [f"file {self.file}"]
        if row == 0:
            where.append("header (line 1)")
        elif row is not None:
            where.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column '{column}'")
        self.reason = message
        self.args = (f"{', '.join(where)}: {message}",)


def read_csv_text(path: Path) -> pd.DataFrame:
    """Every cell as the string in the file, after checking that the file is readable CSV."""
    path = Path(path)
    if path.is_dir():
        raise Unreadable(path, "is a directory, not a CSV file")
    data = path.read_bytes()  # FileNotFoundError propagates: the caller reports a vanished file
    text = _decode(path, data)
    _check_shape(path, text)
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.EmptyDataError:
        raise Unreadable(path, "the file has no header (only blank lines)") from None
    except pd.errors.ParserError as exc:  # a backstop: the csv module accepted what pandas did not
        raise Unreadable(path, f"pandas cannot parse it: {exc}") from None


def _decode(path: Path, data: bytes) -> str:
    if not data:
        raise Unreadable(path, "the file is empty (0 bytes: no header, no rows)")
    for magic, what in MAGIC.items():
        if data.startswith(magic):
            raise Unreadable(path, f"binary data ({what}), not CSV text")
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise Unreadable(path, f"binary data (a NUL byte at byte {offset}), not CSV text",
                         line=data.count(b"\n", 0, offset) + 1)
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Excel writes one) is not part of the header
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, data, exc) from None


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> Unreadable:
    """Locate the bad bytes: line, data row and column, and quote the cell they sit in."""
    start = data.rfind(b"\n", 0, exc.start) + 1
    end = data.find(b"\n", exc.start)
    line_bytes = data[start:end if end >= 0 else len(data)].rstrip(b"\r")
    line = data.count(b"\n", 0, exc.start) + 1
    field = line_bytes[: exc.start - start].count(b",")
    cell = line_bytes.split(b",")[field] if field < len(line_bytes.split(b",")) else line_bytes
    header = data[: data.find(b"\n")].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r").split(",")
    column = header[field] if line > 1 and field < len(header) else None
    shown = cell.decode("utf-8", errors="backslashreplace")[:SHOWN]
    bad = data[exc.start:exc.end]
    return Unreadable(path, f"bytes {bad!r} are not UTF-8 text (the cell reads '{shown}'); save the file as UTF-8",
                      row=line - 1 if line > 1 else None, line=line, column=column)


def _check_shape(path: Path, text: str) -> None:
    """One header, no repeated names, a comma as separator, every row exactly as wide as the header."""
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next((r for r in reader if r), None)
        if header is None:
            raise Unreadable(path, "the file has no header (only blank lines)")
        _check_header(path, header)
        row, ended = 0, reader.line_num  # `ended`: the last line of the last record read whole
        for fields in reader:
            if not fields:
                ended = reader.line_num
                continue  # a blank line; pandas skips it too
            row += 1
            if len(fields) != len(header):
                raise Unreadable(path, f"{len(fields)} fields where the header has {len(header)} "
                                       f"(the row starts '{','.join(fields)[:SHOWN]}')",
                                 row=row, line=reader.line_num)
            ended = reader.line_num
    except csv.Error as exc:
        # The error surfaces where the parser gave up (for an open quote: the end of the file); the record
        # that caused it starts on the line after the last one read whole.
        raise Unreadable(path, f"not valid CSV from this line on: {exc} (a quote opened here and never closed?)",
                         row=row + 1, line=ended + 1) from None


def _check_header(path: Path, header: list[str]) -> None:
    if len(header) == 1:
        for sep in OTHER_DELIMITERS:
            if sep in header[0]:
                name = {"\t": "tab"}.get(sep, f"'{sep}'")
                raise Unreadable(path, f"the header is one field ('{header[0][:SHOWN]}'): the file is {name}-"
                                       f"separated, but the contract reads comma-separated values",
                                 row=0, line=1)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise Unreadable(path, f"the header names column '{name}' twice", row=0, line=1, column=name)
        seen.add(name)
