"""`make deploy`: every deployment of `prefect.yaml` on a Prefect server, with a process worker.

    python -m flows.local_server up     # make deploy
    python -m flows.local_server down   # make stop: the worker and (embedded) server `up` started

Two set-ups, one code path:
- services (`make up` ran, or `make deploy STACK=services`): the stack's Prefect server on PostgreSQL; the
  flows reach MLflow, the ledger and Prefect by the URIs of `services/env.sh` (see `flows.services`);
- embedded (otherwise): a Prefect server on SQLite under `<GENRE_HOME>/prefect-local/home`, started with
  `prefect server start --background` and stopped with `prefect server stop`; the flows use the state of
  GENRE_HOME (`tasks.home`: after `make run`, its story), which they resolve at each run.
The worker is recorded in a pid file beside the server's (`flows.procs`). `up` ends with the lines to paste
into a shell so that `prefect deployment run ...`, `mlflow ui` and `genre recourse` reach the same state.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from flows import procs, services
from tasks.home import root_home, state_home

REPO = Path(__file__).resolve().parent.parent
POOL = "genre-process"
ALERT_BLOCK = "genre-alerts"
PRELUDE = [sys.executable, "-m", "prefect"]


def local_dir(home: Path) -> Path:
    return home / "prefect-local"


def prefect_env(home: Path, port: int, dataset: str = "compas") -> dict[str, str]:
    """Environment for the embedded server, the CLI and the worker: one PREFECT_HOME, the API on loopback."""
    env = dict(os.environ)
    env |= {
        "PREFECT_HOME": str(local_dir(home) / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick up triggered runs within seconds, not ten
        "GENRE_HOME": str(home), "GENRE_REPO": str(REPO), "GENRE_DATASET": dataset,
        "GENRE_DATA_DIR": os.environ.get("GENRE_DATA_DIR", ""),
        # The deployments' alerts go through this saved notification block (`register_alert_block`).
        "GENRE_NOTIFY_BLOCK": os.environ.get("GENRE_NOTIFY_BLOCK") or f"genre-alert-log/{ALERT_BLOCK}",
    }
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    return env


def _server_pid(env: dict) -> int | None:
    return services.prefect_server_pid(Path(env["PREFECT_HOME"]))


def start_server(home: Path, port: int, env: dict) -> int:
    """`prefect server start --background` (SQLite under PREFECT_HOME); returns its pid once healthy."""
    return services.start_prefect_server(Path(env["PREFECT_HOME"]), port, env, timeout=120)


def stop_server(env: dict) -> str | None:
    stopped = services.stop_prefect_server(Path(env["PREFECT_HOME"]), env)
    if stopped is None:
        return None
    pid, killed = stopped
    return f"server (pid {pid}) needed SIGKILL" if killed else f"server (pid {pid})"


def deploy_all(env: dict) -> subprocess.CompletedProcess:
    """Create the process pool (if missing) then deploy everything in prefect.yaml."""
    pools = subprocess.run([*PRELUDE, "work-pool", "inspect", POOL], env=env, cwd=REPO, capture_output=True, text=True)
    if pools.returncode != 0:
        subprocess.run([*PRELUDE, "work-pool", "create", POOL, "--type", "process"], env=env, cwd=REPO, check=True,
                       capture_output=True, text=True)
    return subprocess.run([*PRELUDE, "--no-prompt", "deploy", "--all"], env=env, cwd=REPO, capture_output=True, text=True)


def register_alert_block(home: Path, env: dict) -> subprocess.CompletedProcess:
    """Save the AlertLog notification block (alerts to GENRE_HOME/alerts.jsonl) on the server, unless
    GENRE_NOTIFY_BLOCK names another block the user saved (a webhook, say)."""
    if env["GENRE_NOTIFY_BLOCK"] != f"genre-alert-log/{ALERT_BLOCK}":
        return subprocess.CompletedProcess([], 0, f"alerts go to {env['GENRE_NOTIFY_BLOCK']}", "")
    return subprocess.run([sys.executable, "-m", "tasks.notify", "register", "--name", ALERT_BLOCK, "--path",
                           str(home / "alerts.jsonl")], env=env, cwd=REPO, capture_output=True, text=True)


def deployed_summary(stdout: str) -> list[str]:
    """The lines of `prefect deploy`'s output worth reading here: which deployments were made. Its advice to
    start a worker in another terminal (repeated per deployment) is dropped: `up` starts one itself."""
    import re

    return [f"deployed {name}" for name in re.findall(r"Deployment '([^']+)' successfully created", stdout)]


def start_worker(folder: Path, env: dict) -> int:
    return procs.spawn(folder, "worker", [*PRELUDE, "worker", "start", "--pool", POOL], env, cwd=REPO)


def stop_worker(folder: Path) -> str | None:
    return procs.stop(folder, "worker", (signal.SIGINT, signal.SIGTERM))  # a worker stops on SIGINT


def down(home: Path) -> list[str]:
    """Stop the worker and the embedded server recorded under `home` (the services stack is `make down`'s)."""
    env = prefect_env(home, 0)
    return [line for line in (stop_worker(local_dir(home)), stop_server(env)) if line]


def paste_lines(env: dict) -> str:
    keys = ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI", "GENRE_HOME", "GENRE_LEDGER_URL", "PGPASSFILE",
            "GENRE_SERVICES")
    return "\n".join(f"export {k}={env[k]}" for k in keys if env.get(k))


def up(home: Path, port: int, dataset: str, stack: str = "auto") -> None:
    from genre.core.datasets import is_spec_path
    from tasks.data.specs import resolve_spec

    svc = services.Stack.from_env()
    use_services = stack == "services" or (stack == "auto" and (svc.folder / "env.sh").exists()
                                           and services._prefect_pid(svc) and procs.alive(services._prefect_pid(svc), None))
    if is_spec_path(dataset):  # the worker runs in the repository: give it the file's absolute path
        dataset = str(Path(dataset).expanduser().resolve())
    extra = {"GENRE_REPO": str(REPO), "GENRE_DATASET": dataset, "GENRE_DATA_DIR": os.environ.get("GENRE_DATA_DIR", "")}
    if use_services:
        for line in services.up(svc):  # starts what is not running yet
            print(line)
        env, folder = services.prefect_env(svc) | extra, svc.prefect_home
        env["GENRE_NOTIFY_BLOCK"] = os.environ.get("GENRE_NOTIFY_BLOCK") or f"genre-alert-log/{ALERT_BLOCK}"
        state = svc.state
    else:
        folder = local_dir(home)
        if procs.running(folder, "worker") or _server_pid(prefect_env(home, port)):
            raise SystemExit(f"a local server is recorded in {folder}: run `make stop` first")
        env = prefect_env(home, port, dataset)
        state = state_home(home)
    os.environ["GENRE_HOME"] = env["GENRE_HOME"]
    spec = resolve_spec(dataset, state)  # a bad spec fails here, not in the first scheduled run
    print(f"data set '{spec.name}' ({dataset}); state {state}")
    if not use_services:
        server = start_server(home, port, env)
        print(f"Prefect server (pid {server}) on SQLite at http://127.0.0.1:{port}")
    result = deploy_all(env)
    if result.returncode != 0:
        print(result.stdout[-3000:])
        print(result.stderr[-3000:], file=sys.stderr)
        if not use_services:
            down(home)
        raise SystemExit(f"prefect deploy --all failed (exit {result.returncode})")
    print("\n".join(deployed_summary(result.stdout)) or result.stdout[-3000:])
    alerts = register_alert_block(Path(env["GENRE_HOME"]), env)
    if alerts.returncode != 0:
        print(alerts.stdout[-2000:] + alerts.stderr[-2000:], file=sys.stderr)
        if not use_services:
            down(home)
        raise SystemExit(f"could not save the alert block (exit {alerts.returncode})")
    print(alerts.stdout.strip())
    if procs.running(folder, "worker"):
        print(f"worker already running ({procs.read(folder, 'worker')['pid']})")
    else:
        print(f"worker pid {start_worker(folder, env)} on pool {POOL}; log {folder / 'worker.log'}")
    print(f"stop with `make {'down' if use_services else 'stop'}`. Paste these lines to use the Prefect CLI, "
          f"`make serve` and `genre recourse` on the same state:\n")
    shown = env if use_services else env | {"MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI")
                                            or f"sqlite:///{state / 'mlflow.db'}"}
    print(paste_lines(shown))
    print("\ne.g. prefect deployment run issue-recourse/issue-recourse --params "
          "'{\"applicants\": \"/abs/path/applicants.csv\"}'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_PORT", "4200")))
    parser.add_argument("--dataset", default=os.environ.get("DATASET", "compas"))
    parser.add_argument("--stack", choices=["auto", "embedded", "services"], default=os.environ.get("STACK") or "auto",
                        help="auto: the services stack when `make up` is running, else an embedded server")
    args = parser.parse_args(argv)
    home = root_home()
    if args.command == "up":
        up(home, args.port, args.dataset, args.stack)
    else:
        print("stopped: " + (", ".join(down(home)) or "nothing was recorded"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
