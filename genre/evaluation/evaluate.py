"""`genre evaluate`: run recourse methods on rejected test factuals and score them as the paper's authors do.

`--n 200 --seed 0` is the paper's own table (200 random test rows h rejects). `--n all` scores every test row
h rejects (the "test negatives"). `--seeds 0,1,2` re-fits the judge, h and every generator per seed and
reports each figure's mean and standard deviation over the seeds. `validity_retrained` is robustness to
model change: the share of recourses still accepted by classifiers retrained the way h is on bootstrap
resamples of h's training rows (five, cached with the protocol's models), averaged over them.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from genre.core.datasets import DatasetSpec, get_spec
from genre.core import files
from genre.evaluation.methods import get_method, prepare_method
from genre.core.metrics import already_favourable_warning, setup_metrics
from genre.evaluation.protocol import ProtocolSetup, load_protocol

COLUMNS = ("method", "cost", "validity", "validity_classifier", "validity_retrained", "plausibility", "score",
           "immutable_changed", "categorical_out_of_domain", "recourses_per_second")
# Figures averaged over seeds (the others are counts or speeds, reported per seed).
QUALITY = ("cost", "validity", "validity_classifier", "validity_retrained", "plausibility", "score")


def evaluate(setup: ProtocolSetup, methods: list[str], n: int | None = 200, seed: int = 0) -> dict:
    """Score each method on the same factuals (n random test negatives, or all of them for n=None)."""
    factuals = setup.pick_factuals(n, seed)
    _ = setup.plausibility  # fit (or load) the LOF before any method is timed
    already = float(np.mean(setup.oracle.favourable(factuals))) if len(factuals) else 0.0
    results = []
    for name in methods:
        method = get_method(name)
        # A method that trains or loads a model first (GenRe's generator) does so before the clock starts.
        prepare_method(name, setup)
        start = time.perf_counter()
        recourses = method(factuals, setup)
        elapsed = time.perf_counter() - start
        row = {"method": name, **setup_metrics(factuals, recourses, setup)}
        # Robustness to model change: validity under five h's retrained on bootstrap resamples (cached).
        row["validity_retrained"] = setup.validity_retrained(recourses)
        row["seconds"] = elapsed
        row["recourses_per_second"] = len(factuals) / elapsed if elapsed > 0 else float("inf")
        results.append(row)
    return {"dataset": setup.spec.name, "n": len(factuals), "n_requested": "all" if n is None else n, "seed": seed,
            "factuals_already_favourable": already,
            "validity_warning": already_favourable_warning(already, len(factuals)), "results": results}


def aggregate(reports: list[dict]) -> dict:
    """Mean and standard deviation (ddof 0) of each method's quality figures over per-seed reports."""
    methods = [r["method"] for r in reports[0]["results"]]
    rows = []
    for name in methods:
        per_seed = [next(r for r in rep["results"] if r["method"] == name) for rep in reports]
        row = {"method": name}
        for col in COLUMNS[1:]:
            values = np.array([float(r[col]) for r in per_seed])
            row[col] = float(values.mean())
            row[f"{col}_std"] = float(values.std())
        rows.append(row)
    return {"dataset": reports[0]["dataset"], "seeds": [r["seed"] for r in reports], "n": [r["n"] for r in reports],
            "results": rows}


def format_table(report: dict, with_std: bool = False) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for row in report["results"]:
        cells = [row["method"]]
        for c in COLUMNS[1:]:
            cell = _fmt(row[c])
            if with_std and c in QUALITY:
                cell += f" ± {row[c + '_std']:.3f}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"


def _n(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--n must be a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--n must be a positive integer or 'all', got {text!r}")
    return n


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="adult, compas, heloc, or a spec file (.yaml/.json)")
    parser.add_argument("--methods", default="nnr,wachter",
                        help="comma-separated registry names, e.g. genre,genre-best,nnr,wachter (default: %(default)s)")
    parser.add_argument("--n", type=_n, default=200,
                        help="test factuals with h(x) <= 0.5: a number drawn at random, or 'all' (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the protocol models and the factuals (default: %(default)s)")
    parser.add_argument("--seeds", type=_seeds, help="several seeds, e.g. 0,1,2: models re-fit per seed; mean ± std")
    parser.add_argument("--out", type=Path, help="write the JSON report here")


def main(args: argparse.Namespace) -> int:
    spec: DatasetSpec = get_spec(args.dataset)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = args.seeds or [args.seed]
    reports = []
    for seed in seeds:
        setup = load_protocol(spec, seed=seed, progress=True)
        report = evaluate(setup, methods, n=args.n, seed=seed)
        reports.append(report)
        print(f"{spec.name}: {report['n']} factuals ({'all test negatives' if args.n is None else 'random'}), seed {seed}; "
              f"{report['factuals_already_favourable']:.1%} of them are already favourable to the judge")
        if report["validity_warning"]:
            print(report["validity_warning"])
        print(format_table(report))
    out: dict = reports[0] if len(reports) == 1 else {"per_seed": reports, "mean": aggregate(reports)}
    if len(reports) > 1:
        print(f"\n{spec.name}: mean ± std over seeds {seeds}")
        print(format_table(out["mean"], with_std=True))
    if args.out:
        files.write_json(args.out, out, indent=2)
        print(f"wrote {args.out}")
    return 0
