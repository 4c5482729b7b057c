"""A local Prefect server and process worker on 127.0.0.1 for the deployments in `prefect.yaml`.

    python -m flows.local_server up     # server + pool + `prefect deploy --all` + worker (make deploy)
    python -m flows.local_server down   # stop what `up` started, by the pids it recorded (make stop)

Pids and logs live under `GENRE_HOME/prefect-local/`; the server's database under its `home/`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POOL = "genre-process"
ALERT_BLOCK = "genre-alerts"
PRELUDE = [sys.executable, "-m", "prefect"]


def local_dir(home: Path) -> Path:
    return home / "prefect-local"


def prefect_env(home: Path, port: int, dataset: str = "compas") -> dict[str, str]:
    """Environment for the server, the CLI and the worker: one PREFECT_HOME, the API on loopback."""
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
    return env


def _spawn(cmd: list[str], env: dict, log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def wait_healthy(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the Prefect server on 127.0.0.1:{port} was not healthy after {timeout:.0f} s")


def start_server(home: Path, port: int, env: dict) -> int:
    pid = _spawn([*PRELUDE, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                 local_dir(home) / "server.log")
    _record(home, "server", pid, port)
    wait_healthy(port)
    return pid


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


def start_worker(home: Path, env: dict) -> int:
    pid = _spawn([*PRELUDE, "worker", "start", "--pool", POOL], env, local_dir(home) / "worker.log")
    _record(home, "worker", pid)
    return pid


def _record(home: Path, name: str, pid: int, port: int | None = None) -> None:
    path = local_dir(home) / f"{name}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "port": port}))


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child (the tests start it in-process): a zombie still answers kill 0.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_pid(pid: int, signals: tuple[int, ...], wait: float = 15.0) -> bool:
    """Send each signal in turn until the process is gone; a worker stops on SIGINT, not SIGTERM."""
    for sig in signals:
        if not _alive(pid):
            return True
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.3)
    return not _alive(pid)


def down(home: Path) -> list[str]:
    stopped = []
    for name, signals in (("worker", (signal.SIGINT, signal.SIGTERM)), ("server", (signal.SIGTERM, signal.SIGINT))):
        path = local_dir(home) / f"{name}.pid"
        if not path.exists():
            continue
        pid = json.loads(path.read_text())["pid"]
        if stop_pid(pid, signals):
            path.unlink()
            stopped.append(f"{name} (pid {pid})")
        else:
            stopped.append(f"{name} (pid {pid}) DID NOT STOP")
    return stopped


def up(home: Path, port: int, dataset: str) -> None:
    if (local_dir(home) / "server.pid").exists():
        raise SystemExit(f"a local server is recorded in {local_dir(home)}: run `make stop` first")
    from genre.core.datasets import is_spec_path
    from tasks.data.specs import resolve_spec

    if is_spec_path(dataset):  # the worker runs in the repository: give it the file's absolute path
        dataset = str(Path(dataset).expanduser().resolve())
    spec = resolve_spec(dataset, home)  # a bad spec fails here, not in the first scheduled run
    print(f"data set '{spec.name}' ({dataset})")
    env = prefect_env(home, port, dataset)
    server = start_server(home, port, env)
    result = deploy_all(env)
    if result.returncode != 0:
        print(result.stdout[-3000:])
        print(result.stderr[-3000:], file=sys.stderr)
        down(home)
        raise SystemExit(f"prefect deploy --all failed (exit {result.returncode}); server stopped")
    print("\n".join(deployed_summary(result.stdout)) or result.stdout[-3000:])
    alerts = register_alert_block(home, env)
    if alerts.returncode != 0:
        print(alerts.stdout[-2000:] + alerts.stderr[-2000:], file=sys.stderr)
        down(home)
        raise SystemExit(f"could not save the alert block (exit {alerts.returncode}); server stopped")
    print(alerts.stdout.strip())
    worker = start_worker(home, env)
    print(f"server pid {server} at http://127.0.0.1:{port} (UI and API), worker pid {worker} on pool {POOL}")
    print(f"logs and pids: {local_dir(home)}; stop with `make stop`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_PORT", "4200")))
    parser.add_argument("--dataset", default=os.environ.get("DATASET", "compas"))
    args = parser.parse_args(argv)
    home = Path(os.environ.get("GENRE_HOME", ".genre")).resolve()
    if args.command == "up":
        up(home, args.port, args.dataset)
    else:
        print("stopped: " + (", ".join(down(home)) or "nothing was recorded"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
