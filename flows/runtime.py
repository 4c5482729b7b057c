"""Run a flow from the command line without leaving processes behind.

With PREFECT_API_URL unset, Prefect runs a flow against a temporary API server (uvicorn) that it starts as a
child process and stops at exit. A `kill -9` of the flow skips that exit, and the server used to outlive it.
`run_main` starts that same temporary server first (Prefect's `SubprocessASGIServer`, which the flow then
reuses), and with it:

- a watchdog child that holds a pipe from this process: when this process dies, however it dies, the pipe
  closes and the watchdog stops the server (SIGTERM, then SIGKILL);
- a pid file `GENRE_HOME/pids/ephemeral-<pid>.json` (owner, server, watchdog), removed at a normal exit; the
  next `run_main` stops any recorded server whose owner is gone (the watchdog was killed too, say).

With PREFECT_API_URL set (a real server, a deployment run) there is no temporary server and nothing to do.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks.home import state_home
from tasks.liveness import owner_alive, owner_tag, process_start_time

WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's to handle; its exit closes the pipe
pid, start = int(sys.argv[1]), sys.argv[2]
sys.stdin.buffer.read()  # returns when the parent is gone
def alive():
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19] == start
    except OSError:
        return False
for sig in (signal.SIGTERM, signal.SIGKILL):
    if not alive():
        break
    os.kill(pid, sig)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
"""
_WATCHDOGS: list[subprocess.Popen] = []  # referenced for the life of the process: collecting one closes its pipe


def pids_dir() -> Path:
    return state_home() / "pids"


def _stop(pid: int, start: str | None) -> bool:
    """SIGTERM then SIGKILL a process, if it is still the one that started at `start`; True once it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process_start_time(pid) is None or (start is not None and process_start_time(pid) != start):
            return True
        os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process_start_time(pid) == start:
            time.sleep(0.1)
    return process_start_time(pid) != start


def reap_orphans(folder: Path | None = None) -> list[int]:
    """Stop the temporary servers recorded by entry points that are gone; returns their pids."""
    folder = folder or pids_dir()
    stopped = []
    for path in sorted(folder.glob("ephemeral-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if owner_alive(record.get("owner")) is not False:
            continue  # alive, or on another host: not ours to judge
        server = record.get("server") or {}
        if server.get("pid") and process_start_time(server["pid"]) is not None and process_start_time(server["pid"]) == server.get("start"):
            print(f"stopping the temporary Prefect server (pid {server['pid']}) left by a killed flow (pid "
                  f"{json.loads(record['owner'])['pid']})", file=sys.stderr, flush=True)
            _stop(server["pid"], server.get("start"))
            stopped.append(server["pid"])
        path.unlink(missing_ok=True)
    return stopped


def quiet_when_not_a_terminal() -> None:
    """Progress bars only on a terminal: in a log file or a pipe MLflow's artifact-download bar is dozens of
    redrawn lines (`MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`, MLflow's own switch; an explicit setting wins)."""
    from genre.core.progress import is_terminal

    if not is_terminal():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class CompletedTaskStates(logging.Filter):
    """Drops Prefect's "Finished in state Completed()" line of each task run from the console (a flow runs
    dozens of small tasks); the Prefect API and UI keep them, and failed or crashed states still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "prefect.task_runs" and record.getMessage().startswith("Finished in state Completed"))


def quiet_console() -> None:
    """Attach `CompletedTaskStates` to Prefect's console handler (Prefect's logging set up first, once)."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, CompletedTaskStates)
                                                                  for f in handler.filters):
            handler.addFilter(CompletedTaskStates())


def run_main(main):
    """Call `main()` with a temporary Prefect server that cannot outlive this process (see the module doc)."""
    quiet_when_not_a_terminal()
    quiet_console()
    if os.environ.get("PREFECT_API_URL"):
        return main()
    folder = pids_dir()
    folder.mkdir(parents=True, exist_ok=True)
    reap_orphans(folder)
    record = folder / f"ephemeral-{os.getpid()}.json"
    # Registered before Prefect's own stop (atexit runs last-in first-out): the record goes after the server.
    atexit.register(lambda: record.unlink(missing_ok=True))
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client reuses for this process's flows
    server.start()
    pid = server.server_process.pid
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(pid), str(process_start_time(pid))],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    record.write_text(json.dumps({"owner": owner_tag(), "api": server.api_url,
                                  "server": {"pid": pid, "start": process_start_time(pid)},
                                  "watchdog": {"pid": watchdog.pid, "start": process_start_time(watchdog.pid)}}))
    _WATCHDOGS.append(watchdog)
    return main()
