"""The evaluation's GenRe methods sample as the recipe says, keep_own included."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from genre.core.sampler import Decoding
from genre.core.train_generator import Sampling
from genre.evaluation import genre_methods
from genre.evaluation.methods import get_method


@dataclass
class FakeGenre:
    decoding: Decoding
    seen: list

    def with_decoding(self, decoding: Decoding) -> "FakeGenre":
        return FakeGenre(decoding, self.seen)

    def with_keep_own(self, keep_own: bool) -> "FakeGenre":  # GenRe's own is tested in test_sampler.py
        return self.with_decoding(replace(self.decoding, keep_own=keep_own))

    def generate(self, factuals, **kw):
        self.seen.append((self.decoding, kw))
        return np.asarray(factuals)


def test_the_recipe_s_keep_own_reaches_the_sampler_and_an_ablation_keeps_its_own(monkeypatch):
    seen: list = []
    genre = FakeGenre(Decoding(), seen)
    setup = type("Setup", (), {"seed": 3, "second_opinion": None, "guard": None})()
    paper = Sampling("max_prob", 0.05, 10, keep_own=False)
    monkeypatch.setattr(genre_methods, "sampling", lambda s, which="paper": paper)
    monkeypatch.setattr(genre_methods, "load_or_train", lambda s: genre)
    x = np.zeros((2, 3), dtype=np.float32)
    genre_methods.genre_recourse(x, setup)
    decoding, kw = seen[-1]
    assert decoding.keep_own is False and kw["temperature"] == 0.05 and kw["seed"] == 3
    # An ablation passes its own decoding: the recipe's keep_own does not override it.
    get_method("genre-project-decoding")(x, setup)
    assert seen[-1][0] == Decoding()
    get_method("genre-no-keep-own")(x, setup)
    assert seen[-1][0] == replace(Decoding(), keep_own=False)
