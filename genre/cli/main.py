"""The `genre` command: a thin dispatcher; each subcommand lives in its own module.

A subcommand module exposes `configure(parser)` and `main(args) -> int`. Add one with a line in SUBCOMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from genre.core.datasets import DataError

# name -> (module, one-line help). Modules are imported only when their subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("genre.evaluation.evaluate", "score recourse methods under the paper's protocol"),
    "tune": ("genre.evaluation.tune", "choose a data set's recipe on validation data carved from its training split"),
    "train": ("genre.cli.train", "train (or load) GenRe's generator for a data set, cached under GENRE_HOME"),
    "bench": ("genre.bench.run", "training times and recourses/s of genre, nnr and wachter; cached vs re-run decoding"),
    "bench-peers": ("genre.bench.run_peers", "GenRe against DiCE, NNR and Wachter side by side, plus scaling curves"),
    # Needs MLflow and the ledger, so it lives in tasks/ (imported by name; it imports mlflow only when run).
    "recourse": ("tasks.serving.cli", "recourse for a CSV of applicants from the served genre-recourse model"),
    "ledger": ("tasks.ledger.cli", "the recourse ledger: `genre ledger replay` writes spooled rows to its database"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genre", description="GenRe generative algorithmic recourse")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        # configure lazily would hide the options from --help; importing a small module is cheap.
        importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except (DataError, FileNotFoundError, RuntimeError, ValueError, KeyError) as exc:
        print(f"genre {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
