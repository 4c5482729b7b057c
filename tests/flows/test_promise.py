"""Recourse is a promise (issue 13), end to end with the real flows, a real MLflow registry and ledger (SQLite
in tmp) and tiny real models: a challenger retrained on outcomes of applicants who acted on their recourse
would refuse issued recourse, so the commitment gate blocks it (tags, report, champion unchanged); an
override needs who and why, is recorded and shown by the monitor; a challenger trained with the issued
recourses as weighted favourable rows keeps the promise and passes the gate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from genre.core.datasets import get_spec, load_split
from tasks.training import commitment as promise
from tasks.registry import client as registry
from tasks.ledger.db import Ledger, ledger_url
from tasks.settings import CLASSIFIER_MODEL, PipelineSettings

pytestmark = pytest.mark.slow

SPEC = get_spec("compas")
# The commitment gate is under test: the recourse floors are off so that it is the only gate that can fail.
GATES = {"auc_margin": 0.05, "auc_floor": 0.6, "validity_floor": 0.0, "validity_h_floor": 0.0,
         "plausibility_floor": 0.0}


@pytest.fixture(scope="module")
def story(tmp_path_factory, prefect_harness, pipeline_home):
    """A champion that issued recourse to named applicants, then a batch of those it rejected who acted on
    their recourse (with their own outcomes), ingested, and the challenger retrained on it."""
    from flows.ingest import ingest
    from flows.issue_recourse import issue_recourse
    from flows.promise_story import acted_on_recourse
    from flows.retrain import retrain

    home = tmp_path_factory.mktemp("promise-home")
    # The pairs are pinned (gamma 0.6, the third round's compas recipe) rather than taken from the shipped recipe:
    # what is under test is the gate, and with gamma 0.7's deeper recourse these tiny models break no promise.
    with pipeline_home(home, GATES, classifier_epochs=40, generator_epochs=4, oracle_trees=30, n_factuals=40,
                       generator_train={"batch_size": 64, "pairs": {"gamma": 0.6}}):
        settings = PipelineSettings.from_env()
        incoming = settings.incoming(SPEC.name)
        incoming.mkdir(parents=True)
        train = load_split(SPEC, "train").iloc[:1200].reset_index(drop=True)
        train.to_csv(incoming / "batch-1.csv", index=False)
        ingest(dataset=SPEC.name)
        first = retrain(dataset=SPEC.name)
        assert first["promoted"], first["gates"]
        people = load_split(SPEC, "test").head(200)[list(SPEC.features)]
        people.insert(0, "applicant_id", [f"P{i}" for i in range(len(people))])
        path = home / "applicants.csv"
        people.to_csv(path, index=False)
        issued = issue_recourse(str(path), dataset=SPEC.name)
        assert issued["issued"] > 10
        # The whole way to their recourse (the story goes three quarters): a clear shift for tiny models too.
        acted_on_recourse(SPEC, load_split(SPEC, "train").iloc[1200:], settings, 500, share=1.0).to_csv(
            incoming / "batch-2-acted-on.csv", index=False)
        assert [o["status"] for o in ingest(dataset=SPEC.name)] == ["ingested"]
        blocked = retrain(dataset=SPEC.name)
        yield settings, first, issued, blocked


def _gate(result: dict) -> dict:
    return next(g for g in result["gates"] if g["name"] == promise.GATE)


def test_the_commitment_gate_blocks_a_challenger_that_breaks_the_promise(story):
    settings, first, issued, blocked = story
    gate = _gate(blocked)
    assert gate["rescored"] == issued["issued"] and gate["voided"] == len(gate["affected_ids"]) > 0
    assert gate["figure"] > gate["threshold"] == 0.05 and not gate["passed"]
    assert not blocked["promoted"] and [g["name"] for g in blocked["gates"] if not g["passed"]] == ["commitment"]
    assert registry.champion_versions(settings) == (first["classifier_version"], first["generator_version"])
    # Figure, threshold, verdict and the affected ledger ids on the version's tags, and in the report.
    tags = registry.version_tags(CLASSIFIER_MODEL, blocked["classifier_version"], settings)
    assert float(tags["gate.commitment.figure"]) == gate["figure"] and tags["gate.commitment.verdict"] == "fail"
    assert float(tags["gate.commitment.threshold"]) == 0.05
    assert tags["gate.commitment.affected_ids"] == ",".join(map(str, gate["affected_ids"]))
    report = json.loads(Path(tags["gate.commitment.report"]).read_text())
    assert report["affected_ids"] == gate["affected_ids"]
    assert set(issued["ledger_ids"]) >= set(report["affected_ids"])
    # The generator was trained all the same, so that a person may override the gate.
    assert blocked["generator_version"] is not None


def test_an_override_needs_who_and_why_and_is_recorded_and_shown_by_the_monitor(story):
    from flows.override import OverrideRefused, main, override

    settings, first, _, blocked = story
    version = blocked["classifier_version"]
    with pytest.raises(OverrideRefused, match="commitment.override.by"):
        override(version=version, monitor_after=False)
    with pytest.raises(OverrideRefused, match="failed gates"):  # a version that passed is not 'overridden'
        registry.set_tags(CLASSIFIER_MODEL, first["classifier_version"],
                          {promise.OVERRIDE_BY: "x", promise.OVERRIDE_REASON: "y"}, settings)
        override(version=first["classifier_version"], monitor_after=False)
    assert registry.champion_versions(settings)[0] == first["classifier_version"]

    # A promotion that fails after the decision was recorded takes the record back: the two never disagree.
    import flows.override as override_module

    def broken_move(*args, **kwargs):
        raise RuntimeError("registry unreachable")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(override_module, "promote_pair", broken_move)
        with pytest.raises(RuntimeError, match="registry unreachable"):
            main(["--version", version, "--by", "Jane Roe (credit risk)", "--reason", "regulator-mandated repricing"])
    ledger = Ledger(ledger_url(settings.home))
    try:
        assert ledger.overrides(version).empty
    finally:
        ledger.dispose()
    assert registry.champion_versions(settings)[0] == first["classifier_version"]

    main(["--version", version, "--by", "Jane Roe (credit risk)", "--reason", "regulator-mandated repricing"])
    assert registry.champion_versions(settings) == (version, blocked["generator_version"])
    tags = registry.version_tags(CLASSIFIER_MODEL, version, settings)
    assert tags[promise.OVERRIDE_BY] == "Jane Roe (credit risk)" and promise.OVERRIDE_APPLIED in tags
    assert "monitoring.run_id" in tags  # the new champion was monitored
    ledger = Ledger(ledger_url(settings.home))
    try:
        recorded = ledger.overrides(version)
        summary = json.loads((settings.reports / version / "summary.json").read_text())
    finally:
        ledger.dispose()
    assert len(recorded) == 1
    row = recorded.iloc[0]
    assert (row["by"], row["reason"]) == ("Jane Roe (credit risk)", "regulator-mandated repricing")
    assert row["affected_ids"] == _gate(blocked)["affected_ids"] and row["voided"] == _gate(blocked)["voided"]
    shown = summary["commitment_override"]
    assert shown["by"] == "Jane Roe (credit risk)" and shown["voided"] == _gate(blocked)["voided"]
    run = MlflowClient(settings.mlflow_uri).get_run(tags["monitoring.run_id"])
    assert run.data.tags["commitment.override.reason"] == "regulator-mandated repricing"


def test_a_challenger_trained_to_keep_the_promise_passes_the_gate(story):
    from flows.retrain import retrain

    settings, _, issued, blocked = story
    kept = retrain(dataset=SPEC.name, keep_promise=True)
    gate = _gate(kept)
    assert gate["rescored"] == issued["issued"]
    assert gate["passed"] and gate["voided"] < _gate(blocked)["voided"], gate
    anchors = Path(kept["run_dir"]) / "anchors.csv"
    assert sum(1 for _ in anchors.open()) - 1 == issued["issued"]
