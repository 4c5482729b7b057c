"""Issue 12's measured run (not a test): `make up && make deploy`, then the whole story against the
PostgreSQL-backed services through the deployments, each step timed, then `make down` and a process check.

    .venv/bin/python bench/services_story.py --applicants 1000000 --out docs/deploy/story.json

Steps: ingest the compas training split; retrain (promotes; the promotion event triggers monitoring of the
first champion); issue recourse to N applicants (Parquet) on a Dask LocalCluster of 2 workers; ingest a
shifted batch; retrain again (promotes; monitoring of the new champion re-scores the whole ledger on the
cluster). Times are wall-clock seconds of each CLI call and the flow run's own run time from Prefect's API.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sh(cmd: list[str], env: dict, label: str, steps: list, timeout: float = 3600) -> str:
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    print(f"[{label}] {seconds:.1f} s (exit {done.returncode})", flush=True)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        raise SystemExit(f"{label} failed")
    steps.append({"step": label, "wall_s": round(seconds, 1)})
    return done.stdout


def flow_run(run_id: str) -> dict:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    return {"state": run.state.type.value, "run_s": round(run.total_run_time.total_seconds(), 1),
            "name": run.name, "id": str(run.id)}


def deploy_run(name: str, params: dict, env: dict, label: str, steps: list) -> dict:
    out = sh([sys.executable, "-m", "prefect", "deployment", "run", name, "--params", json.dumps(params), "--watch",
              "--watch-interval", "3"], env, label, steps)
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    info = flow_run(run_id)
    steps[-1] |= info
    if info["state"] != "COMPLETED":
        raise SystemExit(f"{label}: flow run {run_id} ended {info['state']}")
    return info


def wait_monitor(version: str, env: dict, label: str, steps: list, timeout: float = 3600) -> dict:
    """The monitor run the promotion event triggered (flow run name monitor-v<version>)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"monitor-v{version}"])))
        final = [r for r in runs if r.state and r.state.is_final()]
        if final:
            run = final[0]
            info = {"step": label, "wall_s": round(time.monotonic() - started, 1), "state": run.state.type.value,
                    "run_s": round(run.total_run_time.total_seconds(), 1), "name": run.name, "id": str(run.id)}
            print(f"[{label}] {info}", flush=True)
            steps.append(info)
            return info
        time.sleep(5)
    raise SystemExit(f"{label}: no finished monitor-v{version} run after {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--applicants", type=int, default=1_000_000)
    parser.add_argument("--home", default=str(REPO / ".genre-measure"))
    parser.add_argument("--out", default=str(REPO / "docs" / "deploy" / "story.json"))
    args = parser.parse_args()
    home = Path(args.home).resolve()
    os.environ.setdefault("GENRE_DATA_DIR", str(REPO.parent / "shared" / "data" / "cf-data"))
    env = dict(os.environ) | {"GENRE_HOME": str(home), "GENRE_DASK_CLUSTER": "local", "GENRE_DASK_WORKERS": "2",
                              "GENRE_PG_PORT": "55433", "GENRE_MLFLOW_PORT": "55001", "PREFECT_PORT": "54201",
                              "OMP_NUM_THREADS": "1"}
    steps: list[dict] = []
    load = os.getloadavg()
    sh(["make", "up"], env, "make up", steps)
    sh(["make", "deploy"], env, "make deploy", steps)
    svc = dict(line.removeprefix("export ").split("=", 1) for line in (home / "services" / "env.sh").read_text().splitlines())
    env |= svc
    os.environ.update(svc)  # this script's own Prefect client
    state = Path(svc["GENRE_HOME"])

    from flows.batches import partition_test, shifted_batch
    from genre.core.datasets import get_spec, load_split

    spec = get_spec("compas")
    train, test = load_split(spec, "train"), load_split(spec, "test")
    incoming = state / "incoming" / spec.name
    incoming.mkdir(parents=True, exist_ok=True)
    train.to_csv(incoming / "batch-001-train.csv", index=False)
    deploy_run("ingest/ingest", {}, env, "ingest (training split)", steps)
    deploy_run("retrain/retrain", {}, env, "retrain + promote 1", steps)
    from tasks.registry.client import champion_versions
    from tasks.settings import PipelineSettings

    v1 = champion_versions(PipelineSettings.from_env())[0]
    wait_monitor(v1, env, f"monitor v{v1} (triggered by the promotion)", steps)

    t0 = time.monotonic()
    rows = pd.concat([train, test], ignore_index=True)[list(spec.features)]
    people = rows.sample(n=args.applicants, replace=True, random_state=7).reset_index(drop=True)
    people.insert(0, "applicant_id", [f"p{i:07d}" for i in range(len(people))])
    src = state / "applicants" / f"applicants-{args.applicants}.parquet"
    src.parent.mkdir(parents=True, exist_ok=True)
    people.to_parquet(src, index=False)
    print(f"[applicants file] {len(people)} rows written in {time.monotonic() - t0:.1f} s", flush=True)
    info = deploy_run("issue-recourse/issue-recourse", {"applicants": str(src), "out": str(src.with_suffix(".out.parquet")),
                                                        "cluster": "local", "workers": 2},
                      env, f"issue recourse ({args.applicants:,} applicants, Dask 2 workers)", steps)
    info["rows_per_s_run"] = round(args.applicants / info["run_s"], 1)

    parts = partition_test(test, 0)
    size = min(max(500, len(train) // 10), 3 * len(parts["shift"]) // 4)
    shifted_batch(parts["shift"], train, spec, 0, size).to_csv(incoming / "batch-002-shifted.csv", index=False)
    deploy_run("ingest/ingest", {}, env, "ingest (shifted batch)", steps)
    deploy_run("retrain/retrain", {}, env, "retrain + promote 2", steps)
    v2 = champion_versions(PipelineSettings.from_env())[0]
    if v2 == v1:
        print("retrain 2 was not promoted: no second monitoring run", flush=True)
    else:
        wait_monitor(v2, env, f"monitor v{v2} (re-scores the ledger on the cluster)", steps)

    sh(["make", "down"], env, "make down", steps)
    time.sleep(2)
    mine = _ancestors()  # this script and the shell that started it name the home on their command lines
    left = [_cmdline(p) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) not in mine and str(home) in _cmdline(p)]
    result = {"applicants": args.applicants, "load_before": [round(x, 2) for x in load],
              "load_after": [round(x, 2) for x in os.getloadavg()], "steps": steps, "processes_left": left}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if not left else 1


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return pids


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
