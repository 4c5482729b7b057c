"""The paper's min-max encoding: values in [0, 1] and an exact round trip on every built-in data set."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from genre.core.datasets import BUILTIN, load_split, split_xy
from genre.core.encoding import MinMaxEncoder, NotFittedError


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_round_trip_gives_back_the_table(name):
    spec = BUILTIN[name]
    X_train, _ = split_xy(load_split(spec, "train"), spec)
    X_test, _ = split_xy(load_split(spec, "test"), spec)
    enc = MinMaxEncoder(spec).fit(X_train)
    Z = enc.transform(X_train)
    assert Z.dtype == np.float32 and Z.shape == (len(X_train), spec.d)
    assert Z.min() >= 0.0 and Z.max() <= 1.0
    for X in (X_train, X_test):
        back = enc.inverse_transform(enc.transform(X))
        for f in spec.features:
            if f in spec.categorical or f in spec.integer:
                # Categories as strings and whole numbers come back exactly.
                assert back[f].tolist() == X[f].tolist(), f
            else:
                np.testing.assert_allclose(back[f].to_numpy(), X[f].to_numpy(), rtol=1e-5, atol=1e-4 * enc.range_[spec.features.index(f)])


def test_encoder_state_round_trips_through_json():
    spec = BUILTIN["compas"]
    X, _ = split_xy(load_split(spec, "train"), spec)
    enc = MinMaxEncoder(spec).fit(X)
    again = MinMaxEncoder.from_state_dict(json.loads(json.dumps(enc.state_dict())))
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))


def test_project_snaps_categoricals_to_their_levels():
    spec = BUILTIN["compas"]
    X, _ = split_xy(load_split(spec, "train"), spec)
    enc = MinMaxEncoder(spec).fit(X)
    noisy = np.clip(enc.transform(X.iloc[:50]) + np.random.default_rng(0).normal(0, 0.2, (50, spec.d)), -0.5, 1.5)
    projected = enc.project(noisy)
    assert projected.min() >= 0.0 and projected.max() <= 1.0
    for j, levels in enc.category_levels().items():
        assert np.isin(np.round(projected[:, j], 5), np.round(levels, 5)).all()


def test_transform_before_fit_is_an_error():
    with pytest.raises(NotFittedError):
        MinMaxEncoder(BUILTIN["compas"]).transform(pd.DataFrame())


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_snap_units_is_what_to_units_writes_read_back(name):
    """`snap_units` (numpy only) moves rows exactly where writing them in units and reading them back does."""
    spec = BUILTIN[name]
    X_train, _ = split_xy(load_split(spec, "train"), spec)
    enc = MinMaxEncoder(spec).fit(X_train)
    Z = enc.transform(X_train.head(2000))
    Z = np.clip(Z + np.random.default_rng(0).normal(0, 0.05, Z.shape).astype(np.float32), -0.05, 1.05)
    assert np.array_equal(enc.snap_units(Z), enc.transform(enc.to_units(Z)))
    assert np.array_equal(enc.snap_units(Z), enc.transform(enc.in_units(enc.inverse_transform(Z))))
    columns = enc.unit_columns(Z)
    table = enc.to_units(Z)
    assert all(np.array_equal(columns[f], table[f].to_numpy()) for f in spec.features)
