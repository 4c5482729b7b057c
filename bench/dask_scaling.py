"""Issue 12's side-by-side measurement (not a test), against the services stack of a home where
`bench/services_story.py` left a champion: batch recourse rows/s on a Dask LocalCluster of 1 worker and of
2 workers in one run, and the answers of the 2-worker cluster against the single-process path on a 10,000-row
sample (every column of every row, ledger ids aside).

    .venv/bin/python bench/dask_scaling.py --home .genre-measure --rows 200000 --out docs/deploy/scaling.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=str(REPO / ".genre-measure"))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--out", default=str(REPO / "docs" / "deploy" / "scaling.json"))
    args = parser.parse_args()
    os.environ |= {"GENRE_HOME": str(Path(args.home).resolve()), "GENRE_PG_PORT": "55433", "GENRE_MLFLOW_PORT": "55001",
                   "PREFECT_PORT": "54201", "OMP_NUM_THREADS": "1"}
    from flows import services

    stack = services.Stack.from_env()
    up_started = time.monotonic()
    services.up(stack)
    print(f"stack up in {time.monotonic() - up_started:.1f} s", flush=True)
    os.environ |= stack.env()
    try:
        result = measure(stack, args)
    finally:
        print("\n".join(services.down(stack)), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if result["identical"] else 1


def measure(stack, args) -> dict:
    from flows.issue_recourse import issue_recourse
    from genre.core.datasets import get_spec, load_split

    spec = get_spec("compas")
    rows = pd.concat([load_split(spec, "train"), load_split(spec, "test")], ignore_index=True)[list(spec.features)]
    folder = stack.state / "scaling"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for n, seed in ((args.sample, 11), (args.rows, 12)):
        frame = rows.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
        frame.insert(0, "applicant_id", [f"s{seed}-{i:07d}" for i in range(n)])
        files[n] = folder / f"applicants-{n}.parquet"
        frame.to_parquet(files[n], index=False)
    load = os.getloadavg()
    one = issue_recourse(str(files[args.sample]), dataset=spec.name, out=str(folder / "one.csv"))
    two = issue_recourse(str(files[args.sample]), dataset=spec.name, out=str(folder / "two.csv"), cluster="local",
                         workers=2, partition_rows=2_000)
    a = pd.read_csv(folder / "one.csv", dtype=str).drop(columns="ledger_id")
    b = pd.read_csv(folder / "two.csv", dtype=str).drop(columns="ledger_id")
    identical = a.equals(b)
    runs = {}
    for workers in (1, 2):
        s = issue_recourse(str(files[args.rows]), dataset=spec.name, out=str(folder / f"w{workers}.parquet"),
                           cluster="local", workers=workers, partition_rows=10_000)
        runs[workers] = {k: s[k] for k in ("applicants", "rejected", "issued", "partitions", "answer_seconds",
                                           "rows_per_second", "total_seconds", "partition_seconds")}
        print(f"{workers} worker(s): {runs[workers]}", flush=True)
    return {"sample": args.sample, "identical": bool(identical), "sample_issued": [one["issued"], two["issued"]],
            "sample_seconds": {"in_process": one["answer_seconds"], "dask_2_workers": two["answer_seconds"]},
            "rows": args.rows, "workers": runs, "speedup": round(runs[2]["rows_per_second"] / runs[1]["rows_per_second"], 2),
            "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count()}


if __name__ == "__main__":
    raise SystemExit(main())
