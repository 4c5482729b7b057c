"""The training store: appends are atomic and idempotent, versions are content-addressed, and a row's
held-out side never changes between versions."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from genre.core.datasets import get_spec, load_split
from tasks.data import store
from tasks.training.fit import holdout_mask

SPEC = get_spec("compas")


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return load_split(SPEC, "train")


def test_same_content_is_appended_once(tmp_path, train):
    first = store.append_batch(tmp_path, train.head(50), "a" * 64, "one.csv")
    again = store.append_batch(tmp_path, train.head(50), "a" * 64, "copy-of-one.csv")
    assert first is not None and again is None
    assert [b["source"] for b in store.manifest(tmp_path)] == ["one.csv"]
    assert store.is_ingested(tmp_path, "a" * 64) and not store.is_ingested(tmp_path, "b" * 64)


def test_snapshot_is_named_by_its_batches_and_holds_them_in_order(tmp_path, train):
    store.append_batch(tmp_path, train.head(40), "a" * 64, "one.csv")
    v1 = store.snapshot(tmp_path, SPEC)
    store.append_batch(tmp_path, train.iloc[40:100], "b" * 64, "two.csv")
    v2 = store.snapshot(tmp_path, SPEC)
    assert v1.data_hash != v2.data_hash and v1.path.exists() and v2.path.exists()
    assert (v1.rows, v2.rows, v2.batches) == (40, 100, 2)
    pd.testing.assert_frame_equal(pd.read_csv(v2.path), pd.read_csv(v2.path).iloc[:100])
    assert pd.read_csv(v2.path)["age"].tolist() == train["age"].head(100).tolist()
    assert store.snapshot(tmp_path, SPEC).data_hash == v2.data_hash  # same store, same version


def test_empty_store_cannot_be_snapshotted(tmp_path):
    with pytest.raises(FileNotFoundError, match="empty"):
        store.snapshot(tmp_path, SPEC)


def test_no_temp_files_are_left_behind(tmp_path, train):
    store.append_batch(tmp_path, train.head(30), "c" * 64, "x.csv")
    store.snapshot(tmp_path, SPEC)
    assert not list(tmp_path.rglob("*.tmp"))
    assert json.loads((tmp_path / "manifest.json").read_text())["batches"][0]["rows"] == 30


def test_a_row_stays_on_its_side_of_the_holdout_as_the_store_grows(train):
    small, large = train.head(500), train.head(2000)
    assert holdout_mask(small, 20).tolist() == holdout_mask(large, 20)[:500].tolist()
    share = holdout_mask(large, 20).mean()
    assert 0.12 < share < 0.28
