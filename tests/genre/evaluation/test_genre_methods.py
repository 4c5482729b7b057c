"""The evaluation's GenRe methods sample as the recipe says, keep_own included."""
from __future__ import annotations

from dataclasses import dataclass, replace

from pathlib import Path

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
    monkeypatch.setattr(genre_methods, "load_or_train", lambda s, rule="paper": genre)
    x = np.zeros((2, 3), dtype=np.float32)
    genre_methods.genre_recourse(x, setup)
    decoding, kw = seen[-1]
    assert decoding.keep_own is False and kw["temperature"] == 0.05 and kw["seed"] == 3
    # An ablation passes its own decoding: the recipe's keep_own does not override it.
    get_method("genre-project-decoding")(x, setup)
    assert seen[-1][0] == Decoding()
    get_method("genre-no-keep-own")(x, setup)
    assert seen[-1][0] == replace(Decoding(), keep_own=False)


def test_genre_best_samples_from_the_best_rule_s_own_generator_and_genre_from_the_paper_rule_s(monkeypatch):
    seen: list = []
    own = {"paper": FakeGenre(Decoding(), seen), "best": FakeGenre(Decoding(), seen)}
    asked: list[str] = []

    def load(s, rule="paper"):
        asked.append(rule)
        return own[rule]

    setup = type("Setup", (), {"seed": 0, "second_opinion": None, "guard": None})()
    monkeypatch.setattr(genre_methods, "sampling", lambda s, which="paper": Sampling("max_prob", 0.1, 10))
    monkeypatch.setattr(genre_methods, "load_or_train", load)
    x = np.zeros((2, 3), dtype=np.float32)
    genre_methods.genre_best_recourse(x, setup)
    genre_methods.genre_recourse(x, setup)
    genre_methods.genre_mincost_recourse(x, setup)
    assert asked == ["best", "paper", "paper"]


def test_a_recipe_with_a_best_generator_gives_the_best_rule_its_own_configs(tmp_path):
    import json

    from genre.core.train_generator import load_recipe

    base = json.loads((Path(genre_methods.__file__).parents[1] / "core" / "recipes" / "compas.json").read_text())
    base.pop("best_generator", None)  # the shipped recipe may have one: start from a recipe with one generator
    (tmp_path / "compas.json").write_text(json.dumps(base))
    shared = load_recipe("compas", 7, directory=tmp_path)
    assert shared.best_generator is None and shared.for_rule("best") == shared.for_rule("paper")
    own = dict(base, best_generator={"generator": dict(base["generator"], emb=64, ff=128),
                                     "train": dict(base["train"], pairs=dict(base["train"]["pairs"], gamma=0.5))})
    (tmp_path / "compas.json").write_text(json.dumps(own))
    r = load_recipe("compas", 7, directory=tmp_path)
    gen, train = r.for_rule("best")
    assert (gen.emb, train.pairs.gamma) == (64, 0.5)
    assert r.for_rule("paper") == (r.generator, r.train) and r.train.pairs.gamma == base["train"]["pairs"]["gamma"]
