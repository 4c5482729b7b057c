"""The `genre` command: a thin dispatcher; each subcommand lives in its own module.

A subcommand module exposes `configure(parser)` and `main(args) -> int`. Add one with a line in SUBCOMMANDS.
Only the module of the subcommand being run (or asked for `--help`) is imported, so `genre --help` and
`genre --version` answer without loading torch, pandas or MLflow.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from genre import __version__

# name -> (module, one-line help). Modules are imported only when their subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("genre.evaluation.evaluate", "score recourse methods under the paper's protocol"),
    "tune": ("genre.evaluation.tune", "choose a data set's recipe on validation data carved from its training split"),
    "train": ("genre.cli.train", "train (or load) GenRe's generator for a data set, cached under GENRE_HOME"),
    "bench": ("genre.bench.run", "training times and recourses/s of genre, nnr and wachter; cached vs re-run decoding"),
    "bench-peers": ("genre.bench.run_peers", "GenRe against DiCE, NNR and Wachter side by side, plus scaling curves"),
    # Need MLflow, Prefect and the ledger, so they live in tasks/ and flows/ (imported only when run).
    "recourse": ("tasks.serving.cli", "recourse for a CSV of applicants from the served genre-recourse model"),
    "issue-recourse": ("flows.issue_recourse", "issue recourse to a CSV of applicants from the champion pair "
                                               "(the Prefect flow; results CSV, recorded in the ledger)"),
    "ledger": ("tasks.ledger.cli", "the recourse ledger: `genre ledger replay` writes spooled rows to its database"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults in the help, but not "(default: None)" nor a second default where the text gives one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s options are configured (its module imported), the others list by name."""
    parser = argparse.ArgumentParser(prog="genre", description="GenRe generative algorithmic recourse",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=HelpFormatter)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in SUBCOMMANDS else None).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from genre.core.datasets import DataError

    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except (DataError, FileNotFoundError, RuntimeError, ValueError, KeyError) as exc:
        print(f"genre {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
