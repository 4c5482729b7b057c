"""GenRe as recourse methods of `genre evaluate`: `genre` (the paper's max_prob rule), `genre-best` (the rule
`genre tune` chose), `genre-mincost`, and, new beyond the paper, `genre-knn` (h plus a nearest-neighbour vote of
h's training labels), `genre-robust` and `genre-robust-mincost` (h plus a second opinion: gradient-boosted trees
fit on h's training data); and the decoding ablation (`genre-paper-decoding`, `genre-no-*`).
Temperature, k and margins come from the data set's recipe (`genre.core.train_generator.load_recipe`).

The generator is trained once per protocol set-up (data set, seed, h) with the data set's recipe and cached
beside h under `GENRE_HOME`; later calls load it. `genre train --dataset D` fills the cache ahead of time.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from genre.core import files
from genre.core.generator import GeneratorConfig
from genre.evaluation.methods import register_method
from genre.core.sampler import Decoding, GenRe
from genre.core.train_generator import Sampling, TrainConfig, load_recipe, train_generator

log = logging.getLogger(__name__)


def generator_dir(setup, config: GeneratorConfig, train: TrainConfig) -> Path:
    """Where the generator for this set-up and recipe lives: keyed by both configs, so a new recipe retrains."""
    key = json.dumps({"model": asdict(config), "train": asdict(train)}, sort_keys=True)
    return Path(setup.cache_dir) / f"genre-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def load_or_train(setup, *, progress: bool = True, config: GeneratorConfig | None = None,
                  train: TrainConfig | None = None, rule: str = "paper") -> GenRe:
    """The cached GenRe of a `genre.evaluation.protocol.ProtocolSetup`, trained on h's own labels on first use.
    `rule="best"`: the generator behind the recipe's best rule (its own when `genre tune` chose one for it)."""
    default_cfg, default_train = load_recipe(setup.spec.name, setup.spec.d, rows=len(setup.X_train)).for_rule(rule)
    # The generator's seed follows the set-up's, as `genre train --seed` does, so both share one cache.
    config, train = config or default_cfg, train or replace(default_train, seed=setup.seed)
    directory = generator_dir(setup, config, train)
    if directory in setup.generators:
        return setup.generators[directory]
    if (directory / "genre.json").exists():
        genre = GenRe.load(directory)
    else:
        log.info("%s: training the generator (cached in %s)", setup.spec.name, directory)
        genre = train_generator(setup.X_train, setup.h_labels, encoder=setup.encoder, classifier=setup.classifier,
                                config=config, train=train, progress=progress)
        files.write_json(directory / "recipe.json", {"config": asdict(config), "train": asdict(train)})
        genre.save(directory)
    setup.generators[directory] = genre
    return genre


def sampling(setup, which: str = "paper") -> Sampling:
    """The data set's sampling settings: "paper" (max_prob at its chosen temperature and k) or "best"."""
    r = load_recipe(setup.spec.name, setup.spec.d)
    return r.paper if which == "paper" else r.best


def _generate(setup, select: str, which: str = "paper", genre: GenRe | None = None, **extra) -> np.ndarray:
    s = sampling(setup, which)
    if genre is None:  # the rule's generator and decoding (an ablation passes its own decoding instead)
        genre = load_or_train(setup, rule=which).with_keep_own(s.keep_own)
    sparse = s.sparsify and which == "best"
    if select.startswith("robust") or sparse:
        extra.setdefault("second", setup.second_opinion)
    if sparse and s.guard:
        extra.setdefault("guard", setup.guard)
    return genre.generate(extra.pop("factuals"), k=s.k, temperature=s.temperature, select=select, seed=setup.seed,
                          margin=s.margin, sparsify=sparse, **extra)


def prepare(setup) -> None:
    """Train or load the generator(s) (and the second opinion) before `genre evaluate` starts its clock."""
    load_or_train(setup)
    load_or_train(setup, rule="best")
    _ = setup.second_opinion


@register_method("genre", prepare=prepare)
def genre_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """The paper's GenRe: k samples at the recipe's temperature, keep the one h likes best (max_prob)."""
    return _generate(setup, "max_prob", factuals=factuals)


@register_method("genre-best", prepare=prepare)
def genre_best_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe with the selection rule, temperature, k and margin `genre tune` chose on validation data."""
    s = sampling(setup, "best")
    extra = {"reference": (setup.X_train, setup.h_labels)} if s.select == "knn_vote" else {}
    return _generate(setup, s.select, "best", factuals=factuals, **extra)


@register_method("genre-mincost", prepare=prepare)
def genre_mincost_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe with the cheapest of the k samples that h accepts (h > 0.5), else the max_prob choice."""
    return _generate(setup, "min_cost", factuals=factuals)


@register_method("genre-knn", prepare=prepare)
def genre_knn_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe keeping the sample with the highest h(x+) + share of positive labels among its 10 nearest
    training rows (the labels h was trained on). New beyond the paper; uses only h and the training data."""
    return _generate(setup, "knn_vote", factuals=factuals, reference=(setup.X_train, setup.h_labels))


@register_method("genre-robust", prepare=prepare)
def genre_robust_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe keeping, among the samples h accepts, the one with the highest min(h(x+), g(x+)), g = gradient-
    boosted trees fit on h's training rows and labels (`setup.second_opinion`). New beyond the paper."""
    return _generate(setup, "robust", factuals=factuals)


@register_method("genre-robust-mincost", prepare=prepare)
def genre_robust_mincost_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe keeping the cheapest sample that h accepts (> 0.5) and the second opinion g backs (> margin),
    else genre-robust's choice. New beyond the paper."""
    return _generate(setup, "robust_min_cost", factuals=factuals)


# The decoding ablation: the paper's max_prob rule on the same generator, with one of the project's decoding
# changes switched off (or all of them: `genre-paper-decoding`, the authors' sampler).
ABLATIONS: dict[str, Decoding] = {
    "genre-project-decoding": Decoding(),  # all on (the recipe may switch keep_own off: `genre` then differs)
    "genre-paper-decoding": Decoding.paper(),
    "genre-no-observed-values": Decoding(observed_values=False),
    "genre-no-keep-own": Decoding(keep_own=False),
    "genre-no-clamp": Decoding(clamp=False),
    "genre-no-categorical-mask": Decoding(categorical_mask=False),
}


def _ablation(decoding: Decoding):
    def method(factuals: np.ndarray, setup) -> np.ndarray:
        return _generate(setup, "max_prob", factuals=factuals, genre=load_or_train(setup).with_decoding(decoding))

    method.__doc__ = f"GenRe's max_prob rule with {decoding}."
    return method


for _name, _decoding in ABLATIONS.items():
    register_method(_name, _ablation(_decoding), prepare=prepare)
