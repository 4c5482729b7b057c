"""`python -m data_contracts build [--dataset NAME|SPEC_FILE ...]`: (re)write the suites from spec + training split.

A built-in name rewrites the reviewed `data_contracts/<name>.json`; a spec file's contract goes to
`<GENRE_HOME>/contracts/<name>.json` (the pipeline builds that one itself when it first needs it)."""
from __future__ import annotations

import argparse

from data_contracts.suite import ContractPolicy, build_suite, save_suite, suite_path
from genre.core.datasets import BUILTIN, get_spec, is_spec_path, load_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write data_contracts/<name>.json from a spec and its training split")
    build.add_argument("--dataset", nargs="*", default=sorted(BUILTIN), help="built-in names or spec files")
    build.add_argument("--range-tolerance", type=float, default=ContractPolicy.range_tolerance)
    build.add_argument("--min-rows", type=int, default=ContractPolicy.min_rows)
    build.add_argument("--duplicate-margin", type=float, default=ContractPolicy.duplicate_margin)
    args = parser.parse_args(argv)
    policy = ContractPolicy(args.range_tolerance, args.min_rows, args.duplicate_margin)
    for name in args.dataset:
        spec = get_spec(name)
        if is_spec_path(name):  # a user's data set: under GENRE_HOME, where the flows look for it
            from tasks.settings import PipelineSettings
            from tasks.data.specs import contract_for, resolve_spec

            settings = PipelineSettings.from_env()
            spec = resolve_spec(name, settings.home)
            path = contract_for(spec, settings.home, settings.data_dir, policy=policy, rebuild=True)
        else:
            path = save_suite(build_suite(spec, load_split(spec, "train"), policy), suite_path(spec.name))
        print(f"{spec.name}: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
