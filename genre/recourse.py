"""GenRe as recourse methods of `genre evaluate`: `genre` (the paper's max_prob rule), `genre-mincost`, and,
new beyond the paper, `genre-knn` (h plus a nearest-neighbour vote of h's training labels), `genre-robust` and
`genre-robust-mincost` (h plus a second opinion: gradient-boosted trees fit on h's training data).

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

from genre.generator import GeneratorConfig
from genre.methods import register_method
from genre.sampler import GenRe
from genre.train_generator import TrainConfig, recipe, train_generator

log = logging.getLogger(__name__)

# The paper's sampling settings.
K = 10
TEMPERATURE = 0.1

_LOADED: dict[Path, GenRe] = {}


def generator_dir(setup, config: GeneratorConfig, train: TrainConfig) -> Path:
    """Where the generator for this set-up and recipe lives: keyed by both configs, so a new recipe retrains."""
    key = json.dumps({"model": asdict(config), "train": asdict(train)}, sort_keys=True)
    return Path(setup.cache_dir) / f"genre-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def load_or_train(setup, *, progress: bool = True, config: GeneratorConfig | None = None,
                  train: TrainConfig | None = None) -> GenRe:
    """The cached GenRe of a `genre.protocol.ProtocolSetup`, trained on h's own labels on first use."""
    default_cfg, default_train = recipe(setup.spec.name, setup.spec.d)
    # The generator's seed follows the set-up's, as `genre train --seed` does, so both share one cache.
    config, train = config or default_cfg, train or replace(default_train, seed=setup.seed)
    directory = generator_dir(setup, config, train)
    if directory in _LOADED:
        return _LOADED[directory]
    if (directory / "genre.json").exists():
        genre = GenRe.load(directory)
        genre.history_ = json.loads((directory / "history.json").read_text())
    else:
        log.info("%s: training the generator (cached in %s)", setup.spec.name, directory)
        genre = train_generator(setup.X_train, setup.h_labels, encoder=setup.encoder, classifier=setup.classifier,
                                config=config, train=train, progress=progress)
        genre.save(directory)
        record = {**genre.history_, "config": asdict(config), "train": asdict(train)}
        (directory / "history.json").write_text(json.dumps(record, indent=1))
    _LOADED[directory] = genre
    return genre


load_genre = load_or_train  # the name other benches look for


def prepare(setup) -> None:
    """Train or load the generator before `genre evaluate` starts its clock."""
    load_or_train(setup)


@register_method("genre")
def genre_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """The paper's GenRe: k = 10 samples at temperature 0.1, keep the one h likes best."""
    return load_or_train(setup).generate(factuals, k=K, temperature=TEMPERATURE, select="max_prob", seed=setup.seed)


@register_method("genre-mincost")
def genre_mincost_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe with the cheapest of the k samples that h accepts (h > 0.5), else the max_prob choice."""
    return load_or_train(setup).generate(factuals, k=K, temperature=TEMPERATURE, select="min_cost", seed=setup.seed)


@register_method("genre-knn")
def genre_knn_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe keeping the sample with the highest h(x+) + share of positive labels among its 10 nearest
    training rows (the labels h was trained on). New beyond the paper; uses only h and the training data."""
    return load_or_train(setup).generate(factuals, k=K, temperature=TEMPERATURE, select="knn_vote", seed=setup.seed,
                                         reference=(setup.X_train, setup.h_labels))


@register_method("genre-robust")
def genre_robust_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe keeping, among the samples h accepts, the one with the highest min(h(x+), g(x+)), g = gradient-
    boosted trees fit on h's training rows and labels (`setup.second_opinion`). New beyond the paper."""
    return load_or_train(setup).generate(factuals, k=K, temperature=TEMPERATURE, select="robust", seed=setup.seed,
                                         second=setup.second_opinion)


@register_method("genre-robust-mincost")
def genre_robust_mincost_recourse(factuals: np.ndarray, setup) -> np.ndarray:
    """GenRe keeping the cheapest sample that h accepts (> 0.5) and the second opinion g backs (> 0.6), else
    genre-robust's choice. New beyond the paper."""
    return load_or_train(setup).generate(factuals, k=K, temperature=TEMPERATURE, select="robust_min_cost",
                                         seed=setup.seed, second=setup.second_opinion)


def prepare_robust(setup) -> None:
    """Also fit (or load) the second opinion before the clock starts."""
    load_or_train(setup)
    _ = setup.second_opinion


genre_recourse.prepare = prepare
genre_mincost_recourse.prepare = prepare
genre_knn_recourse.prepare = prepare
genre_robust_recourse.prepare = prepare_robust
genre_robust_mincost_recourse.prepare = prepare_robust
