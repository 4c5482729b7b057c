"""The served model reads a request once: the ledger rows built from `answer_rows`' typed rows are the rows the
ledger built when it read the request again itself, valid and invalid rows alike."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import os
from pathlib import Path

from genre.core.generator import GeneratorConfig
from genre.core.serving import OK, answer, answer_rows
from genre.core.settings import Settings
from genre.core.train_generator import TrainConfig, train_generator
from genre.evaluation.protocol import load_protocol
from tasks.ledger.recorder import _records, _rows

TIMES = ("requested_at", "answered_at")


@pytest.fixture(scope="module")
def compas_setup(tmp_path_factory):
    data_dir = os.environ.get("GENRE_DATA_DIR")
    settings = Settings(home=tmp_path_factory.mktemp("genre_home"), data_dir=Path(data_dir) if data_dir else None)
    return load_protocol("compas", seed=0, settings=settings, progress=False)


@pytest.fixture(scope="module")
def genre(compas_setup):
    s = compas_setup
    return train_generator(s.X_train, s.h_labels, encoder=s.encoder, classifier=s.classifier,
                           config=GeneratorConfig(d=s.d, emb=32, heads=2, enc_layers=1, dec_layers=2, ff=64,
                                                  value_hidden=16),
                           train=TrainConfig(epochs=3, patience=3, seed=0), progress=False)


def _request(compas_setup, n: int = 40) -> pd.DataFrame:
    """Rows as a JSON request gives them: typed numbers, strings, and a few cells no reader accepts."""
    spec, enc = compas_setup.spec, compas_setup.encoder
    rng = np.random.default_rng(5)
    cols = {}
    for j, f in enumerate(spec.features):
        if f in spec.categorical:
            cols[f] = rng.choice(spec.categorical[f], size=n).astype(object)
        else:
            cols[f] = np.rint(enc.min_[j] + rng.random(n) * enc.range_[j] * 0.3).astype(np.int64).astype(object)
    people = pd.DataFrame(cols)
    people.loc[3, "age"] = "abc"
    people.loc[7, "race"] = "Martian"
    people.loc[11, "priors_count"] = None
    people.loc[12, "priors_count"] = "4"  # a number sent as text: read, not refused
    return people


def _untimed(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        r = dict(r, served={k: v for k, v in r["served"].items() if k not in TIMES})
        if r["issued"] is not None:
            r["issued"] = {k: v for k, v in r["issued"].items() if k not in TIMES}
        out.append(r)
    return out


def test_ledger_rows_from_the_typed_rows_equal_those_read_again(genre, compas_setup):
    spec = compas_setup.spec
    people = _request(compas_setup)
    out, typed = answer_rows(people, genre, k=5, temperature=0.5)
    pd.testing.assert_frame_equal(out, answer(people, genre, k=5, temperature=0.5))
    assert out["status"].tolist().count("invalid_input") == 3 and (out["status"] == OK).sum() >= 5
    versions = {"classifier_version": "3", "generator_version": "4"}
    ids = [f"a{i}" for i in range(len(people))]
    args = (people, out, spec, versions, "req", ids, [True] * len(people), {1: [9]})
    again, reused = _rows(*args), _rows(*args, typed)
    assert _untimed(reused) == _untimed(again)
    factuals = [r["issued"]["factual"] for r in reused if r["issued"] is not None]
    assert factuals and all(type(v) is int for f in factuals for v in (f["age"], f["priors_count"]))


@pytest.mark.filterwarnings("ignore:DataFrame columns are not unique")  # pandas' own, for the repeated name
def test_records_match_pandas_to_dict(genre, compas_setup):
    people = _request(compas_setup)
    out = answer(people, genre, k=5, temperature=0.5)
    twice = pd.concat([people[["age"]], people[["age"]]], axis=1)  # a request may repeat a column name
    for frame in (people, out, out.assign(ledger_id=np.arange(len(out)), t=pd.Timestamp("2024-01-01")), twice):
        ours, theirs = _records(frame), frame.to_dict(orient="records")
        assert repr(ours) == repr(theirs)
        assert [[type(v) for v in r.values()] for r in ours] == [[type(v) for v in r.values()] for r in theirs]
