"""A champion alias moved by hand, a champion that cannot be resolved, and a corrupted model file.

Two pairs trained, registered and promoted by the real flows; a real `python -m tasks.serving.serve` (what `make
serve` runs: `mlflow models serve` on the champion pair) on a free loopback port, polling the champion every
second; the real `genre recourse` CLI and the batch recourse and monitoring flows.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from genre.cli import main as cli
from genre.core.datasets import load_split
from tasks.registry import client as registry
from tasks.registry.artifacts import ArtifactError
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL

from faultkit import (
    GATES, REPO, SPEC, TRAINING, assert_consistent, assert_no_input_lost, free_port, post, promoted_story,
)

pytestmark = pytest.mark.slow
FEATURES = list(SPEC.features)


@pytest.fixture(scope="module")
def story(tmp_path_factory, prefect_harness, pipeline_home):
    with promoted_story(tmp_path_factory.mktemp("champion"), pipeline_home, batches=2) as s:
        yield s


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    return load_split(SPEC, "test")[FEATURES].head(6).reset_index(drop=True)


@pytest.fixture(scope="module")
def server(story):
    """`python -m tasks.serving.serve` (make serve) following the champion every second; stopped by its pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"GENRE_SERVE_POLL_SECONDS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = story.settings.home / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "tasks.serving.serve", "--port", str(port)], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        yield port, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _served_pair(port: int, people, want: tuple[str, str] | None, seconds: float = 60):
    """POST until the server answers with the `want` pair (or, with None, refuses); the last reply."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = post(port, people)
        if want is None and status != 200:
            return status, body
        if status == 200 and want is not None:
            pairs = {(r["classifier_version"], r["generator_version"]) for r in body["predictions"]}
            if pairs == {want}:
                return status, body
        assert time.monotonic() < deadline, (status, str(body)[:2000])
        time.sleep(0.5)


def _set_champion(story, classifier_version: str) -> None:
    MlflowClient(story.settings.mlflow_uri).set_registered_model_alias(CLASSIFIER_MODEL, "champion", classifier_version)


def test_a_hand_moved_alias_is_resolved_the_same_everywhere_and_the_monitor_warns(story, server, people, tmp_path,
                                                                                caplog, capsys):
    from flows.issue_recourse import issue_recourse
    from flows.monitor import monitor

    port, log = server
    (c1, g1), (c2, g2) = [(r["classifier_version"], r["generator_version"]) for r in story.results]
    _served_pair(port, people, (c2, g2))
    _set_champion(story, c1)  # by hand, as in the MLflow UI: generator and recourse aliases stay on pair 2
    # The running server picks the change up at its next poll and answers with classifier 1 + its generator.
    _served_pair(port, people, (c1, g1))
    assert f"now serving the champion classifier v{c1} + generator v{g1}" in log.read_text()
    # `genre recourse` resolves the same pair and warns; CSV cells that would run as formulas are neutralised.
    src, dst = tmp_path / "people.csv", tmp_path / "out.csv"
    people.assign(applicant_id=["=cmd|' /C calc'!A0", "+1", "-2", "@x", "p5", "p6"]).to_csv(src, index=False)
    assert cli.main(["recourse", "--input", str(src), "--output", str(dst)]) == 0
    err = capsys.readouterr().err
    assert f"{GENERATOR_MODEL}@champion is v{g2}, not a generator of the champion classifier v{c1}" in err
    out = pd.read_csv(dst, dtype=str, keep_default_na=False)
    assert set(zip(out["classifier_version"], out["generator_version"])) == {(c1, g1)}
    assert dst.read_bytes().split(b"\r\n")[1].startswith(b"'=cmd|' /C calc'!A0,")
    assert out["applicant_id"].tolist() == ["'=cmd|' /C calc'!A0", "+1", "-2", "'@x", "p5", "p6"]
    # Monitoring judges classifier 1 with generator 1 and raises the warning; the aliases are realigned.
    caplog.clear()
    summary = monitor()
    assert (summary["classifier_version"], summary["generator_version"]) == (c1, g1)
    assert any(f"{GENERATOR_MODEL}@champion is v{g2}" in w for w in summary["warnings"])
    assert f"{GENERATOR_MODEL}@champion is v{g2}" in caplog.text
    assert_consistent(story.settings)
    # Batch recourse: the same pair.
    result = issue_recourse(str(src), dataset=SPEC.name, out=str(tmp_path / "batch.csv"))
    assert (result["classifier_version"], result["generator_version"]) == (c1, g1)
    assert pd.read_csv(tmp_path / "batch.csv", dtype=str)["applicant_id"][0] == "'=cmd|' /C calc'!A0"
    assert_no_input_lost(story)


@pytest.fixture(scope="module")
def lone_classifier(story, tmp_path_factory) -> str:
    """A classifier version whose h failed its gates: registered alone, no generator trained against it."""
    from flows.retrain import retrain

    config = tmp_path_factory.mktemp("strict") / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"gates": {**GATES, "auc_floor": 0.999}, "training": TRAINING}))
    result = retrain(dataset=SPEC.name, config=str(config))
    assert not result["promoted"] and result["generator_version"] is None
    return result["classifier_version"]


def test_a_champion_without_a_generator_is_refused_the_same_everywhere(story, server, people, lone_classifier,
                                                                       tmp_path, capsys):
    from flows.issue_recourse import issue_recourse
    from flows.monitor import monitor

    port, _ = server
    c2, g2 = story.results[1]["classifier_version"], story.results[1]["generator_version"]
    _set_champion(story, lone_classifier)
    reason = f"{CLASSIFIER_MODEL}@champion is v{lone_classifier}, which has no complete generator"
    status, body = _served_pair(port, people, None)
    assert status == 400 and reason in body and "refusing a mixed pair" in body
    src = tmp_path / "people.csv"
    people.to_csv(src, index=False)
    assert cli.main(["recourse", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 2
    assert reason in capsys.readouterr().err and not (tmp_path / "o.csv").exists()
    with pytest.raises(registry.MixedChampion, match=reason):
        issue_recourse(str(src), dataset=SPEC.name)
    with pytest.raises(registry.MixedChampion, match=reason):
        monitor(version=lone_classifier)
    # Put right by hand: everything serves pair 2 again.
    _set_champion(story, c2)
    _served_pair(port, people, (c2, g2))
    monitor()  # realigns the generator and recourse aliases moved away before
    assert assert_consistent(story.settings)[:2] == (c2, g2)
    assert_no_input_lost(story)


def _artifact(story, model: str, version: str, name: str) -> Path:
    uri = registry.configure_mlflow(story.settings).get_model_version_download_uri(model, version)
    found = list(Path(uri.removeprefix("file://")).rglob(name))
    assert len(found) == 1, found
    return found[0]


def test_a_truncated_model_file_is_named_and_the_champion_stays(story, people, tmp_path, capsys):
    from flows.issue_recourse import issue_recourse

    cv, gv, rv = assert_consistent(story.settings)
    src = tmp_path / "people.csv"
    people.to_csv(src, index=False)
    broken = [_artifact(story, RECOURSE_MODEL, rv, "generator.pt"), _artifact(story, CLASSIFIER_MODEL, cv, "encoder.json")]
    for path in broken:
        shutil.copy(path, path.with_name(path.name + ".good"))
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated mid-write
    try:
        assert cli.main(["recourse", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 2
        # MLflow loads a copy of the version's files: the error names the version, the file and what is wrong.
        err = capsys.readouterr().err
        assert f"models:/{RECOURSE_MODEL}/{rv}" in err and "generator checkpoint" in err
        assert "generator.pt" in err and "truncated or corrupted" in err
        with pytest.raises(ArtifactError, match=rf"{CLASSIFIER_MODEL} v{cv}: cannot load the encoder \S*encoder\.json"):
            issue_recourse(str(src), dataset=SPEC.name)
    finally:
        for path in broken:
            path.with_name(path.name + ".good").replace(path)
    assert assert_consistent(story.settings) == (cv, gv, rv)
    assert cli.main(["recourse", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 0
    assert_no_input_lost(story)
