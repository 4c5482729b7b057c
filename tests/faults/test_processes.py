"""A flow killed with `kill -9` leaves no Prefect server behind.

Real `python -m flows.ingest` processes with no PREFECT_API_URL, so each starts Prefect's temporary server
(uvicorn). Killed alone, the flow's watchdog stops its server at once; killed together with its watchdog
(nothing left to clean up), the next flow started on that GENRE_HOME stops the leftover server.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.liveness import process_start_time

from faultkit import REPO

pytestmark = pytest.mark.slow


def _start_flow(home: Path, prefect_home: Path) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"GENRE_HOME": str(home), "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
    proc = subprocess.Popen([sys.executable, "-m", "flows.ingest", "--dataset", "compas"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    record = home / "pids" / f"ephemeral-{proc.pid}.json"
    deadline = time.monotonic() + 180
    while not record.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the flow never started its server"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-run, so that it cannot finish before the kill
    time.sleep(0.2)
    return proc, json.loads(record.read_text())


def _gone(pid: int, start: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process_start_time(pid) != start:
            return True
        time.sleep(0.1)
    return False


def _kill(pid: int, start: str | None = None) -> None:
    """SIGKILL a process this test started, never another one that got its pid since."""
    if start is None or process_start_time(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_flow_leaves_no_prefect_server_behind(tmp_path):
    home, prefect_home = tmp_path / "home", tmp_path / "prefect"
    first, record = _start_flow(home, prefect_home)
    server, watchdog = record["server"], record["watchdog"]
    assert process_start_time(server["pid"]) == server["start"]  # its uvicorn is up
    # kill -9 of the watchdog and the flow: nothing is left to stop the server, which outlives them ...
    _kill(watchdog["pid"], watchdog["start"])
    _kill(first.pid)
    first.wait(timeout=10)
    time.sleep(3)
    assert process_start_time(server["pid"]) == server["start"], "the server should have been orphaned here"
    # ... until the next flow starts on this GENRE_HOME: it stops the leftover server first.
    second, record2 = _start_flow(home, prefect_home)
    try:
        assert _gone(server["pid"], server["start"])
        assert not (home / "pids" / f"ephemeral-{first.pid}.json").exists()
        # kill -9 of that flow alone: its watchdog sees it die and stops its server at once.
        _kill(second.pid)
        second.wait(timeout=10)
        assert _gone(record2["server"]["pid"], record2["server"]["start"])
        assert _gone(record2["watchdog"]["pid"], record2["watchdog"]["start"])
    finally:
        if second.poll() is None:
            _kill(second.pid)
        for leftover in (record2["server"], record2["watchdog"], server):
            _kill(leftover["pid"], leftover["start"])
    assert "stopping the temporary Prefect server" in second.stdout.read()
