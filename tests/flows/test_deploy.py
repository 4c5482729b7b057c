"""`prefect --no-prompt deploy --all` against a real local server (free loopback port), started with
`prefect server start --background` and stopped with `prefect server stop`."""
from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest

from flows import local_server, procs

pytestmark = pytest.mark.slow

EXPECTED = {"ingest/ingest", "retrain/retrain", "monitor/monitor", "issue-recourse/issue-recourse"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_all_against_a_local_server(tmp_path):
    port = _free_port()
    env = local_server.prefect_env(tmp_path, port) | {"COLUMNS": "400"}  # rich tables otherwise truncate names
    server = local_server.start_server(tmp_path, port, env)
    try:
        result = local_server.deploy_all(env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        listed = subprocess.run([*local_server.PRELUDE, "deployment", "ls"], env=env, capture_output=True, text=True,
                                check=True, cwd=local_server.REPO).stdout
        assert all(name in listed for name in EXPECTED), listed
        automations = subprocess.run([*local_server.PRELUDE, "automation", "ls"], env=env, capture_output=True,
                                     text=True, check=True, cwd=local_server.REPO).stdout
        assert "monitor__automation" in automations and "genre.classifier.promoted" in automations
        inspected = subprocess.run([*local_server.PRELUDE, "deployment", "inspect", "retrain/retrain"], env=env,
                                   capture_output=True, text=True, check=True, cwd=local_server.REPO).stdout
        # Retrains never overlap: Prefect's own concurrency limit of 1 on the deployment, queueing the next.
        assert re.search(r"'global_concurrency_limit': \{[^}]*'limit': 1,", inspected), inspected
        assert "'collision_strategy': 'ENQUEUE'" in inspected, inspected
    finally:
        stopped = local_server.down(tmp_path)  # `prefect server stop`, then waits for the pid to go
    assert stopped == [f"server (pid {server})"]
    assert not procs.alive(server, None)
    assert not (local_server.local_dir(tmp_path) / "home" / "server.pid").exists()
