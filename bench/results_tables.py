"""Markdown tables for the README and docs/results.md from `make results` JSON (docs/results/*.json).

    .venv/bin/python bench/results_tables.py docs/results

Targets (issue 10): validity >= 0.97 and plausibility >= 0.95 at a cost no higher than the paper's; the best
rule at least 20 % cheaper than the paper's cost. Cells that miss are marked with their distance.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from genre.evaluation.tune import SIZES

PAPER_COST = {"compas": 0.51, "adult": 0.69, "heloc": 2.01}
DATASETS = ("compas", "adult", "heloc")


def _cell(row: dict, key: str, std: bool) -> str:
    text = f"{row[key]:.3f}"
    return text + (f" ± {row[key + '_std']:.3f}" if std and key + "_std" in row else "")


def _reports(results: Path, suffix: str = ""):
    """(data set, report) for each data set whose `make results` JSON exists (the seeds' mean when present)."""
    for name in DATASETS:
        path = results / f"{name}{suffix}.json"
        if path.exists():
            report = json.loads(path.read_text())
            yield name, report.get("mean", report)


def main_table(results: Path) -> str:
    lines = ["| data set | method | cost | validity (judge) | validity (h) | plausibility | meets targets? |",
             "|---|---|---|---|---|---|---|"]
    for name, report in _reports(results):
        for row in report["results"]:
            lines.append(f"| {name} | {row['method']} | {_cell(row, 'cost', True)} | {_cell(row, 'validity', True)} | "
                         f"{_cell(row, 'validity_classifier', True)} | {_cell(row, 'plausibility', True)} | "
                         f"{_verdict(name, row)} |")
    return "\n".join(lines)


def _verdict(name: str, row: dict) -> str:
    if not row["method"].startswith("genre"):
        return ""
    paper = PAPER_COST[name]
    limit = paper * 0.8 if row["method"] == "genre-best" else paper
    misses = []
    if row["validity"] < 0.97:
        misses.append(f"validity {0.97 - row['validity']:.3f} short")
    if row["plausibility"] < 0.95:
        misses.append(f"plausibility {0.95 - row['plausibility']:.3f} short")
    if row["cost"] > limit:
        over = row["cost"] - limit
        misses.append(f"cost {over:.3f} over {limit:.3f}" if over >= 0.0005 else f"cost {over:.4f} over {limit:.3f}")
    return "yes" if not misses else "no: " + ", ".join(misses)


def ablation_table(results: Path) -> str:
    lines = ["| data set | decoding | cost | validity (judge) | plausibility | categorical out of domain | out of range |",
             "|---|---|---|---|---|---|---|"]
    for name, report in _reports(results, "-ablation"):
        for row in report["results"]:
            label = "project (all on)" if row["method"] in ("genre", "genre-project-decoding") else row["method"].removeprefix("genre-")
            lines.append(f"| {name} | {label} | {row['cost']:.3f} | {row['validity']:.3f} | {row['plausibility']:.3f} | "
                         f"{row['categorical_out_of_domain']} | {row.get('out_of_range', '')} |")
    return "\n".join(lines)


def seed_tables(results: Path) -> str:
    """One table per data set and seed (all test negatives)."""
    blocks = []
    for name in DATASETS:
        path = results / f"{name}.json"
        if not path.exists():
            continue
        for run in json.loads(path.read_text()).get("per_seed", []):
            lines = [f"**{name}, seed {run['seed']}**: {run['n']} test negatives, "
                     f"{100 * run['factuals_already_favourable']:.1f}% already favourable to the judge", "",
                     "| method | cost | validity (judge) | validity (h) | plausibility | immutable changed | recourses/s |",
                     "|---|---|---|---|---|---|---|"]
            for r in run["results"]:
                lines.append(f"| {r['method']} | {r['cost']:.3f} | {r['validity']:.3f} | {r['validity_classifier']:.3f} | "
                             f"{r['plausibility']:.3f} | {r['immutable_changed']} | {r['recourses_per_second']:,.0f} |")
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def tuning_table(tuning: Path) -> str:
    """What `genre tune` chose per data set, from its logs (docs/tuning/<name>.json)."""
    lines = ["| data set | tuning seeds | fit / tuning rows | tuning factuals | candidates | chosen generator | paper rule on tuning "
             "(cost / validity / plausibility) | best rule | best rule on tuning | search (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in DATASETS:
        path = tuning / f"{name}.json"
        if not path.exists():
            continue
        log = json.loads(path.read_text())
        recipe = log["recipe"]
        g, pairs = recipe["generator"], recipe["train"]["pairs"]
        chosen = [e for e in log["training_search"] if e["candidate"] == log["chosen_candidate"]][-1]
        size = next((name for name, dims in SIZES.items() if all(g.get(k) == v for k, v in dims.items())), "custom")
        figs = {}
        for which in ("paper", "best"):
            row = next(r for r in log["sampling_search"][which] if r["sampling"] == recipe["sampling"][which])
            figs[which] = f"{row['cost']:.3f} / {row['validity']:.3f} / {row['plausibility']:.3f}"
        p, b = recipe["sampling"]["paper"], recipe["sampling"]["best"]
        rule = (f"{b['select']}, T {b['temperature']}, k {b['k']}, margin {b['margin']}"
                + (", sparsify" + (" + guard" if b["guard"] else "") if b["sparsify"] else "")
                + ("" if b.get("keep_own", True) else ", keep_own off"))
        own = recipe.get("best_generator")
        if own:  # the best rule samples from a generator of its own
            op = own["train"]["pairs"]
            osize = next((n for n, dims in SIZES.items() if all(own["generator"].get(k) == v for k, v in dims.items())),
                         "custom")
            rule += f"; own generator: {osize}, gamma {op['gamma']}, lambda {op['lam']}"
        seeds = log.get("seeds", [log.get("seed", 0)])
        factuals = "+".join(map(str, log.get("n_factuals_per_seed", [log["n_factuals"]])))
        lines.append(f"| {name} | {', '.join(map(str, seeds))} | {log['n_fit_rows']} / {log['n_val_rows']} | {factuals} | "
                     f"{len({e['candidate'] for e in log['training_search']})} | {size}, gamma {pairs['gamma']}, lambda "
                     f"{pairs['lam']}, target_lof {pairs['target_lof']} ({chosen['params']:,} parameters, "
                     f"{chosen['train_seconds']:.0f} s a seed) | T {p['temperature']}{'' if p.get('keep_own', True) else ', keep_own off'}: "
                     f"{figs['paper']} | {rule} | {figs['best']} | {log['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")
    print(main_table(folder))
    print()
    print(ablation_table(folder))
    print()
    print(tuning_table(folder.parent / "tuning"))
    print()
    print(seed_tables(folder))
