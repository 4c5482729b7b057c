"""Training: seeded and reproducible, the best epoch is the one kept, early stopping stops, and the
`genre` methods cache the trained generator under GENRE_HOME."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genre.evaluation import genre_methods as recourse
from genre.core.generator import GeneratorConfig
from genre.evaluation.methods import get_method
from genre.core import pairs as pairs_mod
from genre.core.pairs import PairConfig, split_sources_targets
from genre.core.train_generator import TrainConfig, make_pairs, train_generator

TINY = dict(emb=16, heads=2, enc_layers=1, dec_layers=1, ff=32, value_hidden=8)


def _train(setup, **overrides):
    train = TrainConfig(**{"epochs": 3, "patience": 3, "seed": 0, **overrides})
    return train_generator(setup.X_train, setup.h_labels, encoder=setup.encoder, classifier=setup.classifier,
                           config=GeneratorConfig(d=setup.d, **TINY), train=train, progress=False)


def test_training_is_reproducible_and_keeps_the_best_epoch(compas_setup):
    a, b = _train(compas_setup), _train(compas_setup)
    for p, q in zip(a.generator.state_dict().values(), b.generator.state_dict().values()):
        assert torch.equal(p, q)
    h = a.history
    assert h["val_loss"] == b.history["val_loss"]
    assert h["best_epoch"] == int(np.argmin(h["val_loss"]))
    assert h["val_loss"][-1] < h["val_loss"][0]  # it learns something in three epochs
    assert h["n_train_sources"] > 0 and h["n_targets"] > 0 and h["train_seconds"] > 0


def test_early_stopping_ends_training_when_validation_stops_improving(compas_setup):
    # A learning rate this small cannot improve the validation loss measurably after the first epochs.
    run = _train(compas_setup, epochs=40, patience=2, lr=1e-9, warmup_steps=1)
    assert len(run.history["val_loss"]) < 40


def test_pairs_carry_their_targets_and_training_fits_the_target_lof_once(compas_setup, monkeypatch):
    s = compas_setup
    fits = []

    class CountingLOF(pairs_mod.LocalOutlierFactor):
        def fit_predict(self, X, y=None):
            fits.append(len(X))
            return super().fit_predict(X, y)

    monkeypatch.setattr(pairs_mod, "LocalOutlierFactor", CountingLOF)
    train = TrainConfig(epochs=1, patience=1, seed=0, pairs=PairConfig(target_lof=10))
    h = s.classifier.predict_proba(s.X_train)
    pairs = make_pairs(s.X_train, s.h_labels, h, s.spec.mask("immutable"), train)
    expected = split_sources_targets(s.X_train, s.h_labels, h, train.pairs.gamma, train.pairs.target_lof)[1]
    np.testing.assert_array_equal(pairs.targets, s.X_train[expected])
    assert pairs.train_q.index_.max() < len(pairs.targets)
    fits.clear()
    run = train_generator(s.X_train, s.h_labels, encoder=s.encoder, classifier=s.classifier,
                          config=GeneratorConfig(d=s.d, **TINY), train=train, progress=False)
    assert len(fits) == 1 and run.history["n_targets"] == len(pairs.targets)
    assert run.history["hub_share"] == pairs.train_q.hub_share()  # the pairs' pathology check is kept


def test_genre_methods_are_registered_and_cache_their_generator(compas_setup, monkeypatch):
    quick_cfg = GeneratorConfig(d=compas_setup.d, **TINY)
    quick_train = TrainConfig(epochs=2, patience=2)
    real = recourse.load_recipe
    monkeypatch.setattr(recourse, "load_recipe", lambda name, d, rows=None: dataclasses.replace(
        real(name, d), generator=quick_cfg, train=quick_train, best_generator=None, best_train=None))
    monkeypatch.setattr(compas_setup, "generators", {})
    factuals = compas_setup.pick_factuals(20, seed=0)
    first = get_method("genre")(factuals, compas_setup)
    directory = recourse.generator_dir(compas_setup, quick_cfg, quick_train)
    assert (directory / "generator.pt").exists() and (directory / "history.json").exists()
    compas_setup.generators.clear()  # force a load from disk
    np.testing.assert_array_equal(get_method("genre")(factuals, compas_setup), first)
    cheap = get_method("genre-mincost")(factuals, compas_setup)
    assert np.abs(cheap - factuals).sum(1).mean() <= np.abs(first - factuals).sum(1).mean()
    with pytest.raises(KeyError):
        get_method("genre-nonexistent")
