"""Data contract of the built-in specs, the bad-input errors, user data sets and the download path."""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from genre.core import datasets
from genre.core.datasets import BUILTIN, COMPAS, DataError, DatasetSpec, get_spec, load_split, read_table



@pytest.mark.parametrize("name", sorted(BUILTIN))
@pytest.mark.parametrize("split", ["train", "test"])
def test_spec_matches_file(name, split):
    spec = BUILTIN[name]
    path = datasets.resolve_file(spec, split)
    header = pd.read_csv(path, nrows=0).columns.tolist()
    assert header == spec.columns  # the file holds exactly the spec's columns, in order
    frame = load_split(spec, split)
    assert len(frame) > 100
    for feature, domain in spec.categorical.items():
        assert set(frame[feature]) <= set(domain)
    for feature in spec.integer:
        assert frame[feature].dtype == np.int64
    assert set(frame[spec.target]) == {0, 1}


def test_immutable_features_are_race_and_sex():
    assert BUILTIN["adult"].immutable == ("race", "sex")
    assert BUILTIN["compas"].immutable == ("race", "sex")
    assert BUILTIN["heloc"].immutable == ()
    assert all(s.favourable_label == 1 for s in BUILTIN.values())


GOOD = "age,two_year_recid,c_charge_degree,race,sex,priors_count,length_of_stay,score\n" \
       "34,1,M,African-American,Male,3,2,1\n" \
       "37,0,F,Other,Female,0,1,0\n"


def _write(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


def test_good_file_reads(tmp_path):
    frame = read_table(_write(tmp_path, GOOD), COMPAS)
    assert frame["race"].tolist() == ["African-American", "Other"]
    assert frame["age"].tolist() == [34, 37]


@pytest.mark.parametrize(
    "text, row, column",
    [
        (GOOD.replace(",sex,", ",gender,"), "line 1", "sex"),  # missing column
        (GOOD.replace("37,0,F,Other", "37,0,F,Martian"), "row 2", "race"),  # unknown category
        (GOOD.replace("Female,0,1,0", "Female,zero,1,0"), "row 2", "priors_count"),  # text in a numeric column
        ("", "line 1", "age"),  # empty file
    ],
    ids=["missing-column", "unknown-category", "text-in-number", "empty-file"],
)
def test_bad_input_names_file_row_and_column(tmp_path, text, row, column):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_table(path, COMPAS)
    message = str(err.value)
    assert str(path) in message
    assert row in message
    assert f"'{column}'" in message


def test_header_without_rows_is_refused(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        read_table(_write(tmp_path, GOOD.splitlines()[0] + "\n"), COMPAS)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_user_dataset_needs_no_code(tmp_path, fmt):
    rng = np.random.default_rng(0)
    n = 60
    table = pd.DataFrame({
        "income_k": rng.uniform(10, 90, n).round(1),
        "years": rng.integers(0, 30, n),
        "region": rng.choice(["north", "south", "east"], n),
        "approved": rng.integers(0, 2, n),
    })
    table.iloc[:40].to_csv(tmp_path / "mine_train.csv", index=False)
    table.iloc[40:].to_csv(tmp_path / "mine_test.csv", index=False)
    spec = {
        "name": "mine", "features": ["income_k", "years", "region"], "target": "approved",
        "categorical": {"region": ["north", "south", "east"]}, "immutable": ["region"], "integer": ["years"],
        "train_file": "mine_train.csv", "test_file": "mine_test.csv",
    }
    spec_path = tmp_path / f"mine.{fmt}"
    if fmt == "yaml":
        import yaml

        spec_path.write_text(yaml.safe_dump(spec))
    else:
        spec_path.write_text(json.dumps(spec))
    loaded = get_spec(str(spec_path))
    assert isinstance(loaded, DatasetSpec) and loaded.immutable == ("region",)
    train = load_split(loaded, "train")
    assert len(train) == 40 and train["years"].dtype == np.int64
    assert set(train["region"]) <= {"north", "south", "east"}


def test_offline_with_empty_cache_says_how_to_set_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GENRE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match="GENRE_DATA_DIR"):
        load_split("compas", "train")
    assert not list((tmp_path / "cache").rglob("*.csv*"))  # nothing half-written left behind


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_with_wrong_sha256_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"age,score\n1,0\n"))
    with pytest.raises(RuntimeError, match="sha256"):
        datasets.fetch_file("compas_train.csv", cache_dir=tmp_path)
    assert not (tmp_path / "compas_train.csv").exists()


def test_download_with_right_sha256_is_cached(tmp_path, monkeypatch):
    body = datasets.resolve_file(COMPAS, "test").read_bytes()
    calls = []

    def serve(url, *a, **k):
        calls.append(url)
        return _FakeResponse(body)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    path = datasets.fetch_file("compas_test.csv", cache_dir=tmp_path)
    assert path.read_bytes() == body and datasets.CF_DATA_COMMIT in calls[0]
    datasets.fetch_file("compas_test.csv", cache_dir=tmp_path)
    assert len(calls) == 1  # the second call is served from the cache


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_typed_frames_take_the_quick_path_and_read_as_their_text_does(name):
    """Serving gets numbers already typed (JSON): the quick path must give exactly what reading every value
    through its text gives, including whole floats in integer columns (a client may send 3.0)."""
    spec = BUILTIN[name]
    path = datasets.resolve_file(spec, "test")
    text = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])[spec.columns]
    typed = datasets._coerce_checked(text, spec, str(path))
    floats = typed.astype({f: np.float64 for f in spec.integer})
    for frame in (typed, floats):
        quick = datasets._coerce_typed(frame, spec)
        assert quick is not None
        pd.testing.assert_frame_equal(quick, datasets._coerce_checked(frame, spec, "x"), check_exact=True)
        pd.testing.assert_frame_equal(datasets.coerce_frame(frame, spec), quick, check_exact=True)


@pytest.mark.parametrize("column, value, message", [
    ("age", np.nan, "empty value"), ("age", 30.5, "not a whole number"), ("priors_count", np.inf, "not a number"),
    ("race", None, "empty value"), ("sex", "Robot", "unknown category"),
])
def test_a_bad_typed_value_still_names_its_row_and_column(column, value, message):
    frame = load_split(COMPAS, "test")[list(COMPAS.features)].head(5).astype({column: object})
    frame.loc[3, column] = value
    assert datasets._coerce_typed(frame, COMPAS) is None  # the quick path hands over to the checked one
    with pytest.raises(DataError, match=message) as err:
        datasets.coerce_frame(frame, COMPAS, source="request")
    assert err.value.row == 4 and err.value.column == column
