"""Helpers of the fault-injection suite (fixtures in conftest.py): a GENRE_HOME whose registry holds promoted pairs trained by the
real flows (an even tinier config than the flow tests': what is under test is what survives a fault), and
helpers that read the registry's whole state and check that the champion pair is consistent."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from genre.core.datasets import get_spec, load_split
from tasks.registry import client as registry
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL, PipelineSettings

SPEC = get_spec("compas")
REPO = Path(__file__).resolve().parents[2]
# Faults are under test, not model quality: every pair that trains passes.
GATES = {"auc_margin": 0.05, "auc_floor": 0.6, "validity_floor": 0.0, "validity_h_floor": 0.0,
         "plausibility_floor": 0.0}
TRAINING = {"classifier_epochs": 30, "generator_epochs": 3, "generator_patience": 3, "oracle_trees": 20,
            "n_factuals": 40, "k": 3,
            "generator_model": {"emb": 16, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ff": 32, "value_hidden": 8}}
REQUIRED_TAGS = {CLASSIFIER_MODEL: {"dataset", "data_hash", "run_id", "training_data", "gates.passed"},
                 GENERATOR_MODEL: {"dataset", "data_hash", "run_id", "classifier_version", "gates.passed"},
                 RECOURSE_MODEL: {"dataset", "data_hash", "run_id", "classifier_version", "generator_version"}}


@dataclass
class Story:
    settings: PipelineSettings
    dropped: dict[str, bytes] = field(default_factory=dict)  # input files the test put in incoming
    results: list[dict] = field(default_factory=list)  # retrain results, in order


def drop(story: Story, frame, name: str) -> Path:
    incoming = story.settings.incoming(SPEC.name)
    incoming.mkdir(parents=True, exist_ok=True)
    frame.to_csv(incoming / name, index=False)
    story.dropped[name] = (incoming / name).read_bytes()
    return incoming / name


@contextlib.contextmanager
def promoted_story(home: Path, pipeline_home, batches: int = 1, **training):
    """A GENRE_HOME with `batches` clean batches ingested, each followed by an in-process retrain."""
    from flows.ingest import ingest
    from flows.retrain import retrain

    train = load_split(SPEC, "train")
    with pipeline_home(home, GATES, **{**TRAINING, **training}):
        story = Story(PipelineSettings.from_env())
        for b in range(batches):
            drop(story, train.iloc[b * 700:(b + 1) * 700], f"batch-{b + 1}.csv")
            assert [o["status"] for o in ingest(dataset=SPEC.name)] == ["ingested"]
            result = retrain(dataset=SPEC.name)
            assert result["promoted"], result["gates"]
            story.results.append(result)
        yield story


def registry_state(settings: PipelineSettings) -> dict:
    """Runs of the pipeline experiment by status, and every version of the three models with tags and aliases."""
    client = registry.configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    runs = {r.info.run_id: (r.info.status, dict(r.data.tags)) for r in client.search_runs([experiment.experiment_id])}
    versions = {}
    for model in REQUIRED_TAGS:
        for v in client.search_model_versions(f"name='{model}'"):
            full = client.get_model_version(model, v.version)
            versions[(model, str(v.version))] = {"tags": dict(full.tags), "aliases": set(full.aliases),
                                                 "run_id": full.run_id, "status": full.status}
    return {"runs": runs, "versions": versions}


def assert_consistent(settings: PipelineSettings, *, settled: bool = True) -> tuple[str, str, str]:
    """The champion pair is one: each alias names a complete version, the generator was trained against the
    champion classifier and the recourse model bundles exactly them; every version carries its tags. With
    `settled`, also no run is left RUNNING and the aliases themselves agree (after recovery)."""
    state = registry_state(settings)
    for (model, version), v in state["versions"].items():
        assert v["status"] == "READY" and REQUIRED_TAGS[model] <= set(v["tags"]), (model, version, v["tags"])
        if registry.ORPHAN in v["tags"]:
            assert not v["aliases"], (model, version, v["aliases"])
    champion = registry.resolve_champion(settings)
    cv, gv, rv = champion.classifier_version, champion.generator_version, champion.recourse_version
    assert cv is not None and gv is not None and rv is not None
    for model, version in ((CLASSIFIER_MODEL, cv), (GENERATOR_MODEL, gv), (RECOURSE_MODEL, rv)):
        v = state["versions"][(model, version)]
        assert registry.ORPHAN not in v["tags"] and state["runs"][v["run_id"]][0] == "FINISHED", (model, version)
    assert state["versions"][(GENERATOR_MODEL, gv)]["tags"]["classifier_version"] == cv
    assert (state["versions"][(RECOURSE_MODEL, rv)]["tags"]["classifier_version"],
            state["versions"][(RECOURSE_MODEL, rv)]["tags"]["generator_version"]) == (cv, gv)
    if settled:
        assert [r for r, (status, _) in state["runs"].items() if status == "RUNNING"] == []
        assert champion.warnings == []
        assert (registry.alias_version(GENERATOR_MODEL, registry.CHAMPION, settings),
                registry.alias_version(RECOURSE_MODEL, registry.CHAMPION, settings)) == (gv, rv)
    return cv, gv, rv


def assert_no_input_lost(story: Story) -> None:
    """Every file the test dropped in incoming is still somewhere under GENRE_HOME, byte for byte."""
    home = story.settings.home
    kept = [p.read_bytes() for folder in ("incoming", "processed", "quarantine")
            for p in (home / folder).rglob("*") if p.is_file()]
    for name, content in story.dropped.items():
        assert content in kept, f"{name} was lost"


def flow_process(module: str, api_url: str, *args: str, fault: str | None = None, **env) -> subprocess.Popen:
    """`python -m <module>` as a real subprocess on the harness's Prefect API, with the test's GENRE_HOME."""
    full = {**os.environ, "PREFECT_API_URL": api_url, **env}
    full.pop("GENRE_FAULT", None)
    if fault:
        full["GENRE_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def client(settings: PipelineSettings) -> MlflowClient:
    return registry.configure_mlflow(settings)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, frame) -> tuple[int, dict | str]:
    """POST a frame to a served model's /invocations; (HTTP status, parsed body or its text)."""
    import json
    import urllib.error
    import urllib.request

    payload = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
