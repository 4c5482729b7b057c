"""The one atomic-write helper: the new bytes replace the file in one step, and a failed write leaves the old
file as it was with no temporary file behind."""
from __future__ import annotations

import json

import pytest

from genre.core import files


def test_write_json_makes_the_folder_and_replaces_the_file(tmp_path):
    path = tmp_path / "a" / "b.json"
    files.write_json(path, {"x": 1})
    files.write_json(path, {"x": 2}, indent=2)
    assert json.loads(path.read_text()) == {"x": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with files.atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_temporary_name_is_hidden_from_globs_for_the_real_suffix(tmp_path):
    with files.atomic_path(tmp_path / "batch.csv") as tmp:
        tmp.write_text("a\n1\n")
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and not list(tmp_path.glob("*.csv"))
    assert (tmp_path / "batch.csv").read_text() == "a\n1\n"
