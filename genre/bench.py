"""`genre bench`: training times and recourse speed per data set, GenRe beside NNR and Wachter.

For each data set: the training time of h and of the generator, and recourses per second for 1000 test
factuals (k = 10) of `genre`, `genre-robust-mincost`, `nnr` and `wachter`, measured one after the other in the same process on the
same factuals, with the ratios. On heloc it also times incremental (KV-cached) against re-run-prefix
decoding. Writes everything as JSON.

Where the times come from (also written into the JSON):
- generator: the wall-clock seconds of its training run, recorded when it was trained (the cached model
  is reused; `--retrain` trains a fresh one here and times that).
- h: `--h-epochs` epochs of the paper's recipe are timed here and scaled to the recipe's epoch count, since
  a full adult run takes ~10 minutes on the shared machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from genre.classifier import Classifier
from genre.recourse import generator_dir, load_or_train, sampling
from genre.methods import get_method
from genre.protocol import classifier_config, load_protocol

N_FACTUALS = 1000


def bench_dataset(name: str, *, seed: int = 0, h_epochs: int = 10, retrain: bool = False, speedup: bool = False) -> dict:
    setup = load_protocol(name, seed=seed, progress=True)
    if retrain:
        from genre.train_generator import recipe

        shutil.rmtree(generator_dir(setup, *recipe(setup.spec.name, setup.d)), ignore_errors=True)
    genre = load_or_train(setup)
    paper = sampling(setup, "paper")
    row: dict = {"dataset": setup.spec.name, "n_factuals": N_FACTUALS, "k": paper.k, "temperature": paper.temperature}
    row["generator_train_seconds"] = round(genre.history_["train_seconds"], 1)
    row["generator_train_source"] = "timed now (--retrain)" if retrain else "recorded by the cached training run"
    row["generator_epochs_run"] = len(genre.history_["val_loss"])

    h_cfg = classifier_config(setup.spec, seed)
    start = time.perf_counter()
    Classifier(replace(h_cfg, epochs=h_epochs)).fit(setup.X_train, setup.h_labels)
    per_epoch = (time.perf_counter() - start) / h_epochs
    row["h_train_seconds"] = round(per_epoch * h_cfg.epochs, 1)
    row["h_train_source"] = f"{h_epochs} epochs timed now, scaled to the recipe's {h_cfg.epochs}"

    factuals = _factuals(setup, seed)
    rates = {}
    for method in ("genre", "genre-best", "nnr", "wachter"):
        fn = get_method(method)
        if hasattr(fn, "prepare"):
            fn.prepare(setup)  # the generator and the second opinion load (or fit) before the clock
        start = time.perf_counter()
        fn(factuals, setup)
        rates[method] = N_FACTUALS / (time.perf_counter() - start)
    row["recourses_per_second"] = {m: round(r, 1) for m, r in rates.items()}
    row["genre_vs_nnr"] = round(rates["genre"] / rates["nnr"], 3)
    row["genre_vs_wachter"] = round(rates["genre"] / rates["wachter"], 3)
    if speedup:
        row["decoding"] = decoding_speed(genre, factuals, seed, paper.k, paper.temperature)
    return row


def decoding_speed(genre, factuals: np.ndarray, seed: int, k: int, temperature: float) -> dict:
    """Seconds to draw k samples for every factual, with and without the key/value cache."""
    times = {}
    for incremental in (True, False):
        start = time.perf_counter()
        genre.sample(factuals, k=k, temperature=temperature, seed=seed, incremental=incremental)
        times["incremental" if incremental else "rerun_prefix"] = time.perf_counter() - start
    return {"incremental_seconds": round(times["incremental"], 2), "rerun_prefix_seconds": round(times["rerun_prefix"], 2),
            "speedup": round(times["rerun_prefix"] / times["incremental"], 2)}


def _factuals(setup, seed: int) -> np.ndarray:
    """N_FACTUALS rejected test rows; a test set with fewer repeats them (speed does not depend on which)."""
    rejected = np.flatnonzero(setup.classifier.predict_proba(setup.X_test) <= 0.5)
    rng = np.random.default_rng(seed)
    pick = rng.choice(rejected, size=N_FACTUALS, replace=len(rejected) < N_FACTUALS)
    return setup.X_test[pick]


def format_table(rows: list[dict]) -> str:
    lines = ["| data set | h train s | generator train s | genre rec/s | genre-robust-mincost rec/s | nnr rec/s "
             "| wachter rec/s | genre/nnr | genre/wachter |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rps = r["recourses_per_second"]
        lines.append(f"| {r['dataset']} | {r['h_train_seconds']} | {r['generator_train_seconds']} | {rps['genre']:,.0f} | "
                     f"{rps['genre-robust-mincost']:,.0f} | {rps['nnr']:,.0f} | {rps['wachter']:,.0f} | "
                     f"{r['genre_vs_nnr']} | {r['genre_vs_wachter']} |")
    for r in rows:
        if "decoding" in r:
            dec = r["decoding"]
            lines.append(f"\n{r['dataset']} decoding ({N_FACTUALS} factuals x k={r['k']}): incremental {dec['incremental_seconds']} s, "
                         f"re-run prefix {dec['rerun_prefix_seconds']} s, speed-up {dec['speedup']}x")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", default="compas,heloc,adult", help="comma-separated data sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--h-epochs", type=int, default=10, help="epochs of h to time (scaled to the recipe)")
    parser.add_argument("--retrain", action="store_true", help="train the generators afresh and time them here")
    parser.add_argument("--out", type=Path, default=Path("bench/out/bench.json"))


def main(args: argparse.Namespace) -> int:
    import genre.recourse  # noqa: F401  (registers genre and genre-mincost)

    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        rows.append(bench_dataset(name, seed=args.seed, h_epochs=args.h_epochs, retrain=args.retrain,
                                  speedup=name == "heloc"))
        print(json.dumps(rows[-1]), flush=True)
    print(format_table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps({"seed": args.seed, "results": rows}, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0
