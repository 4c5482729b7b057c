"""GenRe against what a user would pick instead (DiCE random and genetic, NNR, Wachter), side by side.

For each data set, every method gets the same protocol set-up (the same h, oracle and LOF) and the same n
factuals, in one process, one after the other. Per method:
- quality on the factuals it finished: cost, validity (oracle), validity under h, plausibility, and the
  share of recourses that break a constraint (an immutable feature moved, a categorical off its domain, a
  value outside [0, 1]);
- recourses per second for the whole batch (batch methods: the median of 5 calls on all n factuals, after one
  untimed warm-up call that loads or trains what the method caches; DiCE: finished factuals / wall seconds of the
  capped one-by-one run, its explainer built beforehand and reported as `setup_seconds`; CFRL: the median of 5
  calls in its own process, see `genre.bench.peers_cfrl`);
- single-query latency, median and 95th percentile (batch methods: `latency_queries` separate calls on one
  factual each; DiCE: its per-factual times from the batch run, which are single queries already);
- peak memory in a separate, untimed pass in a forked child (see `genre.bench.memory`): batch methods on the
  whole batch, DiCE on its first `memory_queries` factuals (it holds one factual at a time, so n does not
  change it).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from genre.bench.memory import peak_memory_isolated
from genre.evaluation.methods import get_method
from genre.core.metrics import categorical_out_of_domain, immutable_changed, setup_metrics, LEVEL_TOL
from genre.bench.peers_dice import DEFAULT_TIME_CAP_S, DiceRecourse

log = logging.getLogger(__name__)

DICE = {"dice-random": "random", "dice-genetic": "genetic"}
BATCH_REPEATS = 5  # timed calls of a batch method (and of CFRL, in its worker); the median is reported
CFRL = "cfrl"  # alibi's CounterfactualRLTabular, in its own venv (genre.bench.peers_cfrl)
DEFAULT_METHODS = ("genre", "genre-best", "nnr", "wachter", "dice-random", "dice-genetic", CFRL)
COLUMNS = (
    ("method", "method"), ("finished", "finished / n"), ("found", "found"), ("cost", "cost"),
    ("validity", "validity (oracle)"), ("validity_classifier", "validity (h)"),
    ("validity_retrained", "validity (5 retrained h)"), ("plausibility", "plausibility"), ("violation_share", "violations"),
    ("recourses_per_second", "recourses/s"), ("latency_median_ms", "latency median ms"),
    ("latency_p95_ms", "latency p95 ms"), ("train_seconds", "training s"), ("peak_python_mb", "peak Python MB"),
    ("peak_rss_mb", "peak RSS +MB"),
)


def quality(factuals: np.ndarray, recourses: np.ndarray, setup) -> dict:
    """`setup_metrics` plus the share of recourses breaking any constraint."""
    row = setup_metrics(factuals, recourses, setup)
    row["validity_retrained"] = setup.validity_retrained(recourses)  # robustness to model change
    bad = immutable_changed(factuals, recourses, setup.spec) | categorical_out_of_domain(recourses, setup.encoder)
    bad |= ((recourses < -LEVEL_TOL) | (recourses > 1 + LEVEL_TOL)).any(axis=1)
    row["violation_share"] = float(bad.mean())
    return row


def _latency(seconds: np.ndarray) -> dict:
    seconds = np.asarray(seconds, dtype=np.float64)
    seconds = seconds[np.isfinite(seconds)]
    if len(seconds) == 0:
        return {"latency_median_ms": float("nan"), "latency_p95_ms": float("nan"), "latency_queries": 0}
    return {"latency_median_ms": float(np.median(seconds) * 1e3),
            "latency_p95_ms": float(np.percentile(seconds, 95) * 1e3), "latency_queries": int(len(seconds))}


def measure_batch_method(name: str, setup, factuals: np.ndarray, latency_queries: int = 20) -> dict:
    """A method that takes all factuals at once (the GenRe rules, nnr, wachter)."""
    method = get_method(name)
    method(factuals[:1], setup)  # warm-up: loads (or trains) whatever the method caches; not timed
    times = []
    for _ in range(BATCH_REPEATS):  # median of several calls: the machine is shared
        start = time.perf_counter()
        recourses = np.asarray(method(factuals, setup))
        times.append(time.perf_counter() - start)
    elapsed = float(np.median(times))
    singles = []
    for i in range(min(latency_queries, len(factuals))):
        t0 = time.perf_counter()
        method(factuals[i : i + 1], setup)
        singles.append(time.perf_counter() - t0)
    py_mb, rss_mb, where = peak_memory_isolated(lambda: method(factuals, setup))
    n = len(factuals)
    return {"method": name, "n": n, "finished": n, "found": n, **quality(factuals, recourses, setup),
            "seconds": elapsed, "recourses_per_second": n / elapsed if elapsed > 0 else float("inf"),
            **_latency(np.array(singles)), "peak_python_mb": py_mb, "peak_rss_mb": rss_mb,
            "memory_pass": f"batch of {n}, {where}"}


def measure_dice(name: str, setup, factuals: np.ndarray, time_cap_s: float = DEFAULT_TIME_CAP_S,
                 memory_queries: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """DiCE, one factual at a time until the cap; quality only over the factuals it finished."""
    dice = DiceRecourse(setup, DICE[name], seed=seed)
    start = time.perf_counter()
    run = dice.run(factuals, time_cap_s, progress=progress)
    elapsed = time.perf_counter() - start
    done = run.finished
    row = {"method": name, "n": len(factuals), "finished": run.n_finished, "found": run.n_found,
           "dice_errors": run.n_errors,
           "time_cap_s": time_cap_s, "setup_seconds": run.setup_seconds}
    if done.any():
        row.update(quality(factuals[done], run.recourses[done], setup))
        row["n"] = len(factuals)  # quality() counts the finished rows; keep n as the batch size asked for
    else:
        row.update({k: float("nan") for k in ("cost", "validity", "validity_classifier", "validity_retrained", "plausibility",
                                              "violation_share")})
    row.update({"seconds": elapsed, "recourses_per_second": run.n_finished / elapsed if elapsed > 0 else 0.0,
                **_latency(run.seconds)})
    py_mb, rss_mb, where = peak_memory_isolated(lambda: dice.run(factuals[:memory_queries], float("inf")))
    row.update({"peak_python_mb": py_mb, "peak_rss_mb": rss_mb,
                "memory_pass": f"first {min(memory_queries, len(factuals))} factuals one at a time, {where}"})
    return row


def measure_cfrl(setup, factuals: np.ndarray, latency_queries: int = 20, threads: int = 1) -> dict:
    """CFRL in its own venv (a subprocess): the batch and single-query times it measured itself at 1 and at
    `threads` torch threads (the faster is reported), its training time (autoencoder + DDPG, when it was
    trained with `threads`; the trained explainer is cached like GenRe's generator)."""
    from genre.bench.peers_cfrl import run_cfrl

    run = run_cfrl(setup, factuals, threads=threads, answer_threads=(1, threads), latency_queries=latency_queries)
    n = len(factuals)
    return {"method": CFRL, "n": n, "finished": n, "found": n, **quality(factuals, run.recourses, setup),
            "seconds": run.batch_seconds, "recourses_per_second": n / run.batch_seconds,
            **_latency(run.latency_seconds), "train_seconds": run.train_seconds,
            "train_detail": {"autoencoder_s": run.ae_seconds, "ddpg_s": run.fit_seconds,
                             "source": "cached (trained earlier)" if run.cached else "trained now"},
            "threads": run.answer_threads, "seconds_by_threads": run.batch_seconds_by_threads,
            "versions": run.versions, "peak_python_mb": None, "peak_rss_mb": None,
            "memory_pass": "not measured (runs in its own venv)"}


def compare(setup, methods=DEFAULT_METHODS, n: int = 200, seed: int = 0, *, time_cap_s: float = DEFAULT_TIME_CAP_S,
            latency_queries: int = 20, memory_queries: int = 5, progress: bool = True, cfrl_threads: int = 1) -> dict:
    """One data set's side-by-side report; a method that is not available is listed under `skipped`."""
    factuals = setup.pick_factuals(n, seed)
    _ = setup.plausibility  # fit (or load) the LOF before anything is timed
    results, skipped = [], {}
    for name in methods:
        log.info("%s: %s on %d factuals", setup.spec.name, name, n)
        try:
            if name in DICE:
                row = measure_dice(name, setup, factuals, time_cap_s, memory_queries, seed, progress)
            elif name == CFRL:
                row = measure_cfrl(setup, factuals, latency_queries, cfrl_threads)
            else:
                row = measure_batch_method(name, setup, factuals, latency_queries)
        except (KeyError, RuntimeError) as exc:  # not registered, or its venv missing: report it, run the rest
            skipped[name] = str(exc)
            log.warning("%s: skipped %s: %s", setup.spec.name, name, exc)
            continue
        if name.startswith("genre"):
            row["train_seconds"] = _genre_train_seconds(setup, "best" if name == "genre-best" else "paper")
        results.append(row)
        log.info("%s: %s: %s", setup.spec.name, name, _short(row))
    report = {"dataset": setup.spec.name, "n": n, "seed": seed, "time_cap_s": time_cap_s,
              "results": results, "skipped": skipped}
    report["checks"] = must_show(report)
    return report


def _genre_train_seconds(setup, rule: str = "paper") -> float | None:
    """The training seconds of the generator behind a GenRe rule (genre-best may have its own)."""
    try:
        from genre.evaluation.genre_methods import load_or_train
    except ModuleNotFoundError:
        return None
    return float(load_or_train(setup, progress=False, rule=rule).history.get("train_seconds", float("nan")))


def must_show(report: dict) -> dict:
    """Issues 6, 10 and 14's claims per GenRe variant: ≥ 100x and ≥ 1000x DiCE-random's recourses/s, strictly
    higher validity (the authors' judge) and plausibility than both DiCE methods and Wachter; against CFRL, at
    least its recourses/s and strictly higher validity and plausibility. Absent methods leave the check out."""
    rows = {r["method"]: r for r in report["results"]}
    dice = [rows[m] for m in DICE if m in rows]
    wachter = [rows["wachter"]] if "wachter" in rows else []
    checks = {}
    for g in ("genre", "genre-best", "genre-mincost", "genre-robust-mincost"):
        if g not in rows or "dice-random" not in rows:
            continue
        r = rows[g]
        speedup = r["recourses_per_second"] / max(rows["dice-random"]["recourses_per_second"], 1e-12)
        checks[g] = {
            "speedup_vs_dice_random": speedup,
            "speedup_at_least_100x": bool(speedup >= 100),
            "speedup_at_least_1000x": bool(speedup >= 1000),
            "validity_above_dice": bool(all(r["validity"] > d["validity"] for d in dice)),
            "plausibility_above_dice": bool(all(r["plausibility"] > d["plausibility"] for d in dice)),
            "validity_above_wachter": bool(all(r["validity"] > w["validity"] for w in wachter)),
            "plausibility_above_wachter": bool(all(r["plausibility"] > w["plausibility"] for w in wachter)),
        }
        if CFRL in rows:
            c = rows[CFRL]
            checks[g].update({
                "speed_vs_cfrl": r["recourses_per_second"] / max(c["recourses_per_second"], 1e-12),
                "at_least_cfrl_speed": bool(r["recourses_per_second"] >= c["recourses_per_second"]),
                "validity_above_cfrl": bool(r["validity"] > c["validity"]),
                "plausibility_above_cfrl": bool(r["plausibility"] > c["plausibility"]),
            })
        checks[g]["holds"] = all(v for k, v in checks[g].items() if not k.startswith(("speedup_vs", "speed_vs")))
    return checks


def _short(row: dict) -> str:
    return (f"cost {row['cost']:.3f} validity {row['validity']:.3f} plausibility {row['plausibility']:.3f} "
            f"{row['recourses_per_second']:.3g} rec/s")


def _fmt(value) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def format_table(report: dict) -> str:
    """Markdown table, one row per method."""
    lines = ["| " + " | ".join(label for _, label in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report["results"]:
        cells = []
        for key, _ in COLUMNS:
            if key == "finished":
                cells.append(f"{row['finished']} / {row['n']}")
            else:
                cells.append(_fmt(row.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    for name, why in report.get("skipped", {}).items():
        lines.append(f"(skipped {name}: {why})")
    for g, c in report.get("checks", {}).items():
        cfrl = (f"{c['speed_vs_cfrl']:.2f}x CFRL's recourses/s, validity above CFRL: {c['validity_above_cfrl']}, "
                f"plausibility above CFRL: {c['plausibility_above_cfrl']}; ") if "speed_vs_cfrl" in c else ""
        lines.append(f"{g}: {c['speedup_vs_dice_random']:,.0f}x DiCE-random's recourses/s; "
                     f"validity above both DiCE: {c['validity_above_dice']}; "
                     f"plausibility above both DiCE: {c['plausibility_above_dice']}; "
                     f"validity above Wachter: {c.get('validity_above_wachter', '-')}; "
                     f"plausibility above Wachter: {c.get('plausibility_above_wachter', '-')}; {cfrl}-> "
                     f"{'holds' if c['holds'] else 'does NOT hold'}")
    return "\n".join(lines)


# ---- the benchmark run and its subcommand ----------------------------------------------------------
def machine_info() -> dict:
    """What the timings were taken on; the load average shows how busy the shared machine was."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        dice_version = version("dice-ml")
    except PackageNotFoundError:
        dice_version = None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "dice_ml": dice_version,
            "load_average_1_5_15": list(os.getloadavg()), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run_peers_bench(datasets, methods=DEFAULT_METHODS, *, n: int = 200, seed: int = 0,
                    time_cap_s: float = DEFAULT_TIME_CAP_S, latency_queries: int = 20, scaling: bool = True,
                    scaling_dataset: str = "adult", batch_sizes=None, train_sizes=None, train_epochs: int = 2,
                    out_dir=None, progress: bool = True, cfrl_threads: int | None = None) -> dict:
    """The whole issue-6 benchmark: side-by-side tables per data set, the scaling curves, JSON and PNGs.
    The hook other bench commands call (`genre bench --datasets ...`)."""
    from pathlib import Path

    from genre.bench import scaling as bench_scaling
    from genre.bench.plots import write_json, write_plots
    from genre.evaluation.protocol import load_protocol

    try:
        import genre.evaluation.genre_methods  # noqa: F401  (registers genre and genre-mincost)
    except ModuleNotFoundError as exc:
        if exc.name != "genre.evaluation.genre_methods":
            raise
    result: dict = {"machine": machine_info(), "datasets": {}, "scaling": {}}
    for name in datasets:
        setup = load_protocol(name, seed=seed, progress=progress)
        report = compare(setup, methods, n, seed, time_cap_s=time_cap_s, latency_queries=latency_queries,
                         progress=progress, cfrl_threads=cfrl_threads or _cores())
        result["datasets"][setup.spec.name] = report
        print(f"\n{setup.spec.name}: {n} factuals, seed {seed}, time cap {time_cap_s:g} s per method")
        print(format_table(report))
    if scaling:
        setup = load_protocol(scaling_dataset, seed=seed, progress=progress)
        model, weights = bench_scaling.scaling_genre(setup)
        sampling = bench_scaling.sampling_scaling(model, setup.X_test, batch_sizes or bench_scaling.BATCH_SIZES)
        sampling.update({"dataset": setup.spec.name, "weights": weights})
        result["scaling"]["sampling"] = sampling
        result["scaling"]["training"] = bench_scaling.training_scaling(
            setup, train_sizes or bench_scaling.TRAIN_SIZES, epochs=train_epochs, seed=seed, progress=progress)
        print("\n" + format_scaling(result["scaling"]))
    result["machine"]["load_average_after"] = list(__import__("os").getloadavg())
    if out_dir is not None:
        out_dir = Path(out_dir)
        print(f"\nwrote {write_json(result, out_dir / 'peers.json')}")
        for path in write_plots(result, out_dir):
            print(f"wrote {path}")
    return result


def _cores() -> int:
    from genre.core.decoding import default_threads

    return default_threads()


def format_scaling(scaling: dict) -> str:
    lines = []
    if "sampling" in scaling:
        s = scaling["sampling"]
        lines += [f"GenRe sampling on {s['dataset']} (k = {s['k']}, {s['weights']}):",
                  "| factuals | seconds | recourses/s |", "|---|---|---|"]
        lines += [f"| {p['factuals']:,} | {_fmt(p['seconds'])} | {_fmt(p['recourses_per_second'])} |" for p in s["points"]]
        g = s["growth"]
        lines.append(f"log-log slope {g['slope_tail']:.2f} from {g['fit_from']} factuals on "
                     f"({g['slope_all']:.2f} over all): {g['verdict']}")
    if "training" in scaling:
        t = scaling["training"]
        lines += [f"Generator training on {t['dataset']} subsets ({t['epochs']} epochs each):",
                  "| rows | pair sources | seconds per epoch | pair synthesis s |", "|---|---|---|---|"]
        lines += [f"| {p['rows']:,} | {p['sources']:,} | {_fmt(p['seconds_per_epoch'])} | {_fmt(p['pair_seconds'])} |"
                  for p in t["points"]]
        g = t["growth"]
        lines.append(f"log-log slope {g['slope_tail']:.2f}: {g['verdict']}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def configure(parser) -> None:
    from pathlib import Path

    parser.add_argument("--datasets", default="compas,adult", help="comma-separated data sets")
    from genre.evaluation.methods import known_methods

    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated method names, of: {', '.join(sorted({*known_methods(), *DEFAULT_METHODS}))}")
    parser.add_argument("--n", type=int, default=200, help="factuals per data set (the same for every method)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-cap", type=float, default=DEFAULT_TIME_CAP_S, help="seconds per DiCE method")
    parser.add_argument("--latency-queries", type=int, default=20, help="single queries timed per batch method")
    parser.add_argument("--no-scaling", action="store_true", help="skip the two scaling curves")
    parser.add_argument("--scaling-dataset", default="adult")
    parser.add_argument("--batch-sizes", type=_ints, default=None, help="e.g. 1,10,100,1000,10000")
    parser.add_argument("--train-sizes", type=_ints, default=None, help="e.g. 2000,8000,32000")
    parser.add_argument("--train-epochs", type=int, default=2, help="epochs timed per training-set size")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for the in-process methods (default 1); GenRe's sampler splits "
                             "large batches across every core itself")
    parser.add_argument("--cfrl-threads", type=int, default=None,
                        help="torch threads of CFRL's process (default: every core, as GenRe's sampler uses)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"), help="JSON and PNGs go here")


def main(args) -> int:
    import torch

    # One intra-op thread for the in-process methods (h's tiny MLP runs faster so); GenRe's sampler and CFRL use
    # every core (see --cfrl-threads).
    torch.set_num_threads(args.threads)
    run_peers_bench(
        [d.strip() for d in args.datasets.split(",") if d.strip()],
        [m.strip() for m in args.methods.split(",") if m.strip()],
        n=args.n, seed=args.seed, time_cap_s=args.time_cap, latency_queries=args.latency_queries,
        scaling=not args.no_scaling, scaling_dataset=args.scaling_dataset, batch_sizes=args.batch_sizes,
        train_sizes=args.train_sizes, train_epochs=args.train_epochs, out_dir=args.out_dir,
        cfrl_threads=args.cfrl_threads,
    )
    return 0
