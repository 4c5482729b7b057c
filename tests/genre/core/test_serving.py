"""`genre.core.serving.answer`: per-row statuses, reasons naming column and value, the constraints on a few
hundred random factuals, answers that do not depend on the rest of the batch, strict-JSON output."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genre.core.datasets import load_split
from genre.core.generator import GeneratorConfig
from genre.core.metrics import cost
from genre.core.serving import STATUSES, MissingColumns, answer, answer_columns
from genre.core.train_generator import TrainConfig, train_generator

QUICK_MODEL = dict(emb=32, heads=2, enc_layers=1, dec_layers=2, ff=64, value_hidden=16)


@pytest.fixture(scope="module")
def genre(compas_setup):
    s = compas_setup
    return train_generator(s.X_train, s.h_labels, encoder=s.encoder, classifier=s.classifier,
                           config=GeneratorConfig(d=s.d, **QUICK_MODEL),
                           train=TrainConfig(epochs=4, patience=4, seed=0), progress=False)


@pytest.fixture(scope="module")
def test_rows(compas_setup) -> pd.DataFrame:
    return load_split(compas_setup.spec, "test")[list(compas_setup.spec.features)]


def random_factuals(spec, encoder, n: int, seed: int) -> pd.DataFrame:
    """n applicants drawn uniformly over each feature's categories / training range (whole numbers)."""
    rng = np.random.default_rng(seed)
    cols = {}
    for j, f in enumerate(spec.features):
        if f in spec.categorical:
            cols[f] = rng.choice(spec.categorical[f], size=n)
        else:
            cols[f] = np.rint(encoder.min_[j] + rng.random(n) * encoder.range_[j]).astype(np.int64)
    return pd.DataFrame(cols)


def test_immutable_and_increase_only_features_are_never_violated(genre, compas_setup):
    spec, enc = compas_setup.spec, compas_setup.encoder
    people = random_factuals(spec, enc, 300, seed=1)
    # Hot sampling (temperature 2) spreads the samples, so a wrong-way draw would show if it could happen.
    out = answer(people, genre, k=10, temperature=2.0)
    given = out[out["status"].isin(["ok", "already_favourable"])]
    assert len(given) >= 30 and (out["status"] == "ok").sum() >= 10
    for f in spec.immutable:  # race, sex
        assert (given[f] == people.loc[given.index, f]).all(), f
    for f in spec.increase_only:  # age
        assert (given[f].astype(int) >= people.loc[given.index, f]).all(), f
    for f in spec.immutable:
        assert all(f not in c for c in given["changed"])
    # Every sample, not only the selected ones: the wrong-side bins are masked before sampling.
    samples = genre.sample(enc.transform(people), k=10, temperature=2.0, monotone=True,
                           row_seeds=np.arange(len(people)))
    x = enc.transform(people)[:, None, :]
    for j, f in enumerate(spec.features):
        if f in spec.immutable:
            assert np.array_equal(samples[:, :, j], np.broadcast_to(x[:, :, j], samples[:, :, j].shape)), f
        if f in spec.increase_only:
            assert (samples[:, :, j] >= x[:, :, j] - 1e-7).all(), f


def test_each_row_gets_a_status_and_a_bad_row_only_marks_itself(genre, compas_setup, test_rows):
    people = test_rows.head(8).astype(object).reset_index(drop=True)
    people.loc[1, "race"] = "Martian"
    people.loc[2, "age"] = "abc"
    people.loc[3, "priors_count"] = 2.5
    people.loc[4, "length_of_stay"] = 99999
    people.loc[5, "sex"] = None
    out = answer(people, genre, k=5)
    assert list(out.columns) == answer_columns(compas_setup.spec) and len(out) == 8
    assert set(out["status"]) <= set(STATUSES)
    expect = {1: ("'race'", "Martian"), 2: ("'age'", "abc"), 3: ("'priors_count'", "2.5"),
              4: ("'length_of_stay'", "99999"), 5: ("'sex'", "empty")}
    for i, words in expect.items():
        assert out["status"][i] == "invalid_input"
        assert all(w in out["reason"][i] for w in words), out["reason"][i]
        assert out["cost"][i] is None and out["age"][i] is None
    for i in (0, 6, 7):
        assert out["status"][i] != "invalid_input" and out["reason"][i] is None and out["score"][i] is not None
    # The good rows get exactly what they get without the bad ones beside them.
    alone = answer(people.iloc[[0, 6, 7]], genre, k=5)
    pd.testing.assert_frame_equal(out.iloc[[0, 6, 7]].reset_index(drop=True), alone)


def test_reasons_quote_the_value_as_sent(genre, test_rows):
    people = test_rows.head(3).astype(object).reset_index(drop=True)
    people.loc[0, "age"] = "1e308"  # would wrap round to -9223372036854775808 as an int64
    people.loc[1, "age"] = "1e18"  # a whole number int64 holds, far out of range
    people.loc[2, "length_of_stay"] = " 99999 "
    out = answer(people, genre, k=5)
    assert out["status"].tolist() == ["invalid_input"] * 3
    assert out["reason"][0] == "column 'age': '1e308' is too large for a whole number"
    assert out["reason"][1].startswith("column 'age': '1e18' is outside the range the models were trained on [")
    assert out["reason"][2].startswith("column 'length_of_stay': '99999' is outside the range")
    assert not any("-9223372036854775808" in r for r in out["reason"])


def test_an_applicant_gets_the_same_answer_alone_or_in_any_batch(genre, test_rows):
    people = test_rows.head(40)
    together = answer(people, genre, k=5)
    shuffled = answer(people.iloc[::-1], genre, k=5).iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(together, shuffled)
    for i in (0, 17, 39):
        pd.testing.assert_frame_equal(answer(people.iloc[[i]], genre, k=5), together.iloc[[i]].reset_index(drop=True))


def test_statuses_follow_h(genre, compas_setup, test_rows):
    out = answer(test_rows.head(60), genre, k=5)
    favourable = out["status"] == "already_favourable"
    assert favourable.any() and (out["score"][favourable] > 0.5).all()
    assert (out["cost"][favourable] == 0.0).all() and all(c == [] for c in out["changed"][favourable])
    ok = out["status"] == "ok"
    assert (out["score"][ok] <= 0.5).all() and (out["probability"][ok] > 0.5).all()
    assert (out["cost"][ok] > 0).all()
    no = out["status"] == "no_valid_recourse"
    assert (out["probability"][no].astype(float) <= 0.5).all()
    # Each ok row's changed list is exactly the features whose value moved.
    for i in np.flatnonzero(ok):
        moved = [f for f in compas_setup.spec.features if str(out[f][i]) != str(test_rows.iloc[i][f])]
        assert out["changed"][i] == moved  # a list of names, not a JSON string holding one
    # The cost is the evaluation's (and batch recourse's) `metrics.cost` of the recourse as written, to the bit.
    enc, features = compas_setup.encoder, list(compas_setup.spec.features)
    given = out.loc[ok, features].reset_index(drop=True)
    expected = cost(enc.transform(test_rows.head(60).loc[ok, features]), enc.transform(given))
    assert out["cost"][ok].tolist() == expected.tolist()


def test_answers_serialise_to_strict_json(genre, test_rows):
    people = test_rows.head(10).astype(object)
    people.iloc[0, 0] = "x"
    records = answer(people, genre, k=5).to_dict(orient="records")
    json.dumps(records, allow_nan=False)  # raises on NaN / inf


def test_a_missing_column_fails_the_request_listing_every_missing_one(genre, test_rows):
    with pytest.raises(MissingColumns, match=r"\['age', 'priors_count'\]"):
        answer(test_rows.drop(columns=["age", "priors_count"]).head(3), genre)
