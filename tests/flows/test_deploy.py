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
        # The trigger's automation has the name prefect.yaml gives it, not Prefect's `monitor__automation_1`.
        assert "monitor-on-promotion" in automations and "genre.classifier.promoted" in automations
        assert "monitor__automation" not in automations
        # What `make deploy` prints of it: one line per deployment, none of Prefect's "start a worker" advice.
        assert sorted(local_server.deployed_summary(result.stdout)) == sorted(f"deployed {n}" for n in EXPECTED)
        inspected = subprocess.run([*local_server.PRELUDE, "deployment", "inspect", "retrain/retrain"], env=env,
                                   capture_output=True, text=True, check=True, cwd=local_server.REPO).stdout
        # Retrains never overlap: Prefect's own concurrency limit of 1 on the deployment, queueing the next.
        assert re.search(r"'global_concurrency_limit': \{[^}]*'limit': 1,", inspected), inspected
        assert "'collision_strategy': 'ENQUEUE'" in inspected, inspected
        assert "'tags': ['genre', 'training']" in inspected, inspected
        # The alert block is saved on the server; a notification through it lands in GENRE_HOME/alerts.jsonl.
        saved = local_server.register_alert_block(tmp_path, env)
        assert saved.returncode == 0, saved.stderr[-2000:]
        sent = subprocess.run([local_server.sys.executable, "-c", "from tasks import notify; "
                               "assert notify.send(notify.DRIFT, 'deployed block', 'body text')"],
                              env=env, capture_output=True, text=True, cwd=local_server.REPO)
        assert sent.returncode == 0, sent.stderr[-2000:]
        (alert,) = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        assert alert["subject"] == "[genre] drift: deployed block" and alert["body"] == "body text"
    finally:
        stopped = local_server.down(tmp_path)  # `prefect server stop`, then waits for the pid to go
    assert stopped == [f"server (pid {server})"]
    assert not procs.alive(server, None)
    assert not (local_server.local_dir(tmp_path) / "home" / "server.pid").exists()
