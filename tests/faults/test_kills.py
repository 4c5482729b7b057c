"""`kill -9` of a real retrain at three points, then recovery by the next runs; and two retrains started at once.

Each retrain is `python -m flows.retrain` in its own process (on the session's Prefect API), killed by
`GENRE_FAULT=<point>` (tasks/faults.py: SIGKILL to itself at that point). The chain: a retrain killed during
training; the next one (whose start reconciles the first) killed right after its classifier version is
created; the next killed between the champion alias moves; then two retrains started in the same second,
the first of which reconciles the third kill. After each step the registry's state is read and the champion
pair checked; the final state must be settled: nothing RUNNING, every alias consistent.
"""
from __future__ import annotations

import signal

import pytest

from flows.ingest import ingest
from genre.core.datasets import load_split
from tasks.registry import client as registry
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL

from faultkit import (
    REQUIRED_TAGS, SPEC, assert_consistent, assert_no_input_lost, client, drop, flow_process, promoted_story,
    registry_state,
)

pytestmark = pytest.mark.slow


def _pair(result: dict) -> tuple[str, str, str]:
    return result["classifier_version"], result["generator_version"], result["recourse_version"]


@pytest.fixture(scope="module")
def story(tmp_path_factory, prefect_harness, pipeline_home):
    """Pair 1 promoted; a second batch ingested for the retrains that follow."""
    with promoted_story(tmp_path_factory.mktemp("kills"), pipeline_home) as s:
        drop(s, load_split(SPEC, "train").iloc[700:1400], "batch-2.csv")
        assert [o["status"] for o in ingest(dataset=SPEC.name)] == ["ingested"]
        yield s


def _killed(story, api_url: str, fault: str) -> dict:
    before = registry_state(story.settings)
    proc = flow_process("flows.retrain", api_url, "--dataset", SPEC.name, fault=fault)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, output[-4000:]
    after = registry_state(story.settings)
    champion = registry.resolve_champion(story.settings)
    consistent = assert_consistent(story.settings, settled=False)  # right after the kill, before any recovery
    return {"before": before, "after": after, "output": output, "champion": champion, "consistent": consistent,
            "new_runs": sorted(set(after["runs"]) - set(before["runs"])),
            "new_versions": sorted(set(after["versions"]) - set(before["versions"]))}


@pytest.fixture(scope="module")
def during_training(story, api_url):
    return _killed(story, api_url, "during_training")


@pytest.fixture(scope="module")
def after_classifier_version(during_training, story, api_url):
    return _killed(story, api_url, "after_classifier_version")


@pytest.fixture(scope="module")
def between_alias_moves(after_classifier_version, story, api_url):
    return _killed(story, api_url, "between_alias_moves")


@pytest.fixture(scope="module")
def two_retrains(between_alias_moves, story, api_url):
    """Two retrains started in the same second on the same GENRE_HOME."""
    before = registry_state(story.settings)
    procs = [flow_process("flows.retrain", api_url, "--dataset", SPEC.name) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    after = registry_state(story.settings)
    return {"codes": [p.returncode for p in procs], "outputs": outputs, "before": before, "after": after,
            "new_runs": sorted(set(after["runs"]) - set(before["runs"]))}


def test_kill_during_training_leaves_a_running_run_that_the_next_start_marks_failed(
        story, during_training, after_classifier_version):
    assert "GENRE_FAULT=during_training: killing pid" in during_training["output"]
    (run_id,) = during_training["new_runs"]
    assert during_training["after"]["runs"][run_id][0] == "RUNNING"  # what kill -9 leaves
    assert during_training["new_versions"] == []
    assert during_training["consistent"] == _pair(story.results[0])
    # The next retrain's start found no retrain alive (its lock free, its owner process gone): FAILED, and why.
    status, tags = after_classifier_version["after"]["runs"][run_id]
    assert status == "FAILED" and "its process was gone" in tags["genre.reconciled"]
    assert_no_input_lost(story)


def test_kill_right_after_the_classifier_version_leaves_no_version_without_its_tags(
        story, after_classifier_version, between_alias_moves):
    assert "GENRE_FAULT=after_classifier_version: killing pid" in after_classifier_version["output"]
    ((model, version),) = after_classifier_version["new_versions"]  # the classifier, nothing else of the pair
    assert model == CLASSIFIER_MODEL
    v = after_classifier_version["after"]["versions"][(model, version)]
    # Created with every tag in the same call: dataset, data hash, snapshot, gate verdicts.
    assert REQUIRED_TAGS[model] <= set(v["tags"]) and "gate.auc_floor.verdict" in v["tags"]
    assert not v["aliases"] and after_classifier_version["after"]["runs"][v["run_id"]][0] == "RUNNING"
    assert after_classifier_version["consistent"] == _pair(story.results[0])
    # Recovered by the next start: the run FAILED, the version an orphan with no alias, never promoted.
    later = between_alias_moves["after"]
    assert later["runs"][v["run_id"]][0] == "FAILED"
    assert "did not finish" in later["versions"][(model, version)]["tags"][registry.ORPHAN]
    assert not later["versions"][(model, version)]["aliases"]
    assert registry.is_complete(client(story.settings), model, version) is False  # move_champion refuses it
    assert_no_input_lost(story)


def test_kill_between_the_alias_moves_is_resolved_to_one_pair_and_realigned(story, between_alias_moves, two_retrains):
    assert "GENRE_FAULT=between_alias_moves: killing pid" in between_alias_moves["output"]
    after = between_alias_moves["after"]
    new = {model: version for model, version in between_alias_moves["new_versions"]}
    assert set(new) == {CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL}
    assert all(after["runs"][after["versions"][(m, v)]["run_id"]][0] == "FINISHED" for m, v in new.items())
    # Killed with genre-classifier@champion moved and genre-generator@champion not: the aliases disagree ...
    assert "champion" in after["versions"][(CLASSIFIER_MODEL, new[CLASSIFIER_MODEL])]["aliases"]
    assert "champion" not in after["versions"][(GENERATOR_MODEL, new[GENERATOR_MODEL])]["aliases"]
    # ... yet serving, batch recourse and monitoring resolve one pair: the classifier's and its generator.
    champion = between_alias_moves["champion"]
    assert between_alias_moves["consistent"] == (new[CLASSIFIER_MODEL], new[GENERATOR_MODEL], new[RECOURSE_MODEL])
    assert any(f"{GENERATOR_MODEL}@champion is v{story.results[0]['generator_version']}" in w for w in champion.warnings)
    # The next start realigned the aliases and said so.
    assert any(f"{GENERATOR_MODEL}@champion is v{story.results[0]['generator_version']}, not a generator of the "
               f"champion classifier v{new[CLASSIFIER_MODEL]}" in out for out in two_retrains["outputs"])
    assert_no_input_lost(story)


def test_two_retrains_started_together_run_one_after_the_other(story, two_retrains):
    assert two_retrains["codes"] == [0, 0], [o[-3000:] for o in two_retrains["outputs"]]
    assert any("another retrain holds" in o for o in two_retrains["outputs"])
    runs = [client(story.settings).get_run(r).info for r in two_retrains["new_runs"]]
    assert len(runs) == 2 and all(r.status == "FINISHED" for r in runs)
    first, second = sorted(runs, key=lambda r: r.start_time)
    assert first.end_time <= second.start_time  # never overlapping
    cv, gv, rv = assert_consistent(story.settings)  # nothing RUNNING, every alias agrees
    assert any(r.run_id == client(story.settings).get_model_version(CLASSIFIER_MODEL, cv).run_id for r in runs)
    assert_no_input_lost(story)
