"""CSV injection: text cells a spreadsheet would run as formulas are neutralised; numbers stay numbers."""
from __future__ import annotations

import pandas as pd

from tasks.data.csv_safe import neutralised, write_csv

RISKY = ["=cmd|' /C calc'!A0", "+SUM(A1:A2)", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=1"]


def test_risky_text_gets_a_leading_quote_and_numbers_do_not(tmp_path):
    frame = pd.DataFrame({
        "applicant_id": RISKY + ["-3", "+1.5e3", "plain"],
        "cost": [-0.5] * 10,  # a numeric column is never touched
        "age": pd.Series([-1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype="int64"),
    })
    path = write_csv(frame, tmp_path / "out.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert back["applicant_id"].tolist()[:7] == ["'" + v for v in RISKY]
    assert back["applicant_id"].tolist()[7:] == ["-3", "+1.5e3", "plain"]
    assert back["cost"].tolist() == ["-0.5"] * 10 and back["age"].tolist()[0] == "-1"
    assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in back["applicant_id"][:7])
    assert path.read_bytes().split(b"\r\n")[1].startswith(b"'=cmd|' /C calc'!A0,")


def test_object_columns_keep_their_non_text_values():
    frame = pd.DataFrame({"x": pd.Series([None, 3, -2.5, "=1"], dtype=object)})
    assert neutralised(frame)["x"].tolist() == [None, 3, -2.5, "'=1"]
