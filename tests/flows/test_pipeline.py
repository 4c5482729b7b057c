"""Ingest and retrain flows end to end under `prefect_test_harness`, on a real MLflow registry (SQLite in
tmp), the real data contract and tiny real models trained on compas samples.

Story: a clean batch is ingested and its pair promoted; the same file again is a no-op; a corrupted batch is
quarantined and nothing trains; a batch whose labels were shuffled upstream passes the contract (its values
are fine) but the classifier trained on it fails its AUC gate, so the pair stays challenger.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from genre.core.datasets import get_spec, load_split
from tasks.registry import client as registry
from tasks.data import store
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PipelineSettings

pytestmark = pytest.mark.slow

SPEC = get_spec("compas")
GATES = {"auc_margin": 0.02, "auc_floor": 0.65, "validity_floor": 0.7, "validity_h_floor": 0.8,
         "plausibility_floor": 0.5}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, prefect_harness, pipeline_home):
    """A fresh GENRE_HOME and a tiny-training config for the module's flows."""
    home = tmp_path_factory.mktemp("genre-home")
    with pipeline_home(home, GATES):
        yield PipelineSettings.from_env()


@pytest.fixture(scope="module")
def train():
    return load_split(SPEC, "train")


def _drop(settings: PipelineSettings, frame, name: str) -> Path:
    incoming = settings.incoming(SPEC.name)
    incoming.mkdir(parents=True, exist_ok=True)
    frame.to_csv(incoming / name, index=False)
    return incoming / name


def _versions(settings: PipelineSettings, model: str) -> list[str]:
    client = registry.configure_mlflow(settings)
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{model}'"))


@pytest.fixture(scope="module")
def first_pair(pipeline, train):
    """The happy path: one clean batch in, a pair trained, registered and promoted."""
    from flows.ingest import ingest
    from flows.retrain import retrain

    _drop(pipeline, train.iloc[:800], "batch-1.csv")
    ingested = ingest(dataset=SPEC.name)
    return ingested, retrain(dataset=SPEC.name)


def test_happy_path_registers_and_promotes_a_tagged_pair(pipeline, first_pair, train):
    ingested, result = first_pair
    assert [o["status"] for o in ingested] == ["ingested"]
    assert result["promoted"], result["gates"]
    cv, gv = result["classifier_version"], result["generator_version"]
    assert registry.champion_versions(pipeline) == (cv, gv)
    clf_tags = registry.version_tags(CLASSIFIER_MODEL, cv, pipeline)
    gen_tags = registry.version_tags(GENERATOR_MODEL, gv, pipeline)
    assert gen_tags["classifier_version"] == cv and gen_tags["data_hash"] == clf_tags["data_hash"] == result["data_hash"]
    assert Path(clf_tags["training_data"]).exists() and clf_tags["gates.passed"] == "True"
    assert {f"gate.{g['name']}.verdict" for g in result["gates"]} <= set(clf_tags)
    # The pair the registry serves is the pair that was trained: same h, usable recourse.
    classifier, encoder = registry.load_classifier_version(cv, pipeline)
    genre = registry.load_generator_version(gv, pipeline)
    assert len(registry.training_data_for(cv, pipeline)) == 800
    factuals = encoder.transform(train.iloc[1200:1210][list(SPEC.features)])
    recourse = genre.generate(factuals, k=5)
    assert np.allclose(genre.classifier.predict_proba(recourse), classifier.predict_proba(recourse))
    # The generator version carries the second opinion fit in its run, so the robust rules can be served.
    assert genre.second_opinion is not None
    robust = genre.generate(factuals, k=5, select="robust_min_cost")
    assert robust.shape == recourse.shape and np.isfinite(robust).all()
    # Served through pyfunc by alias, in the applicant's units; an unreadable row gets a status, not a crash.
    applicants = train.iloc[1200:1204][list(SPEC.features)].astype(object).reset_index(drop=True)
    applicants.loc[2, "race"] = "Martian"
    served = mlflow.pyfunc.load_model(f"models:/{GENERATOR_MODEL}@champion").predict(applicants)
    assert served["status"].tolist()[:2] == ["ok", "ok"] and "Martian" in served["status"][2]
    assert served["race"][0] == applicants["race"][0] and served["race"][2] is None
    scored = mlflow.pyfunc.load_model(f"models:/{CLASSIFIER_MODEL}@champion").predict(applicants)
    assert scored["probability"][0] == pytest.approx(float(classifier.predict_proba(encoder.transform(
        train.iloc[[1200]][list(SPEC.features)]))[0]))
    run = MlflowClient(pipeline.mlflow_uri).get_run(clf_tags["run_id"])
    assert {"auc", "accuracy", "cost", "validity", "plausibility"} <= set(run.data.metrics)
    artifacts = {a.path for a in MlflowClient(pipeline.mlflow_uri).list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/loss_curve.png", "plots/cost_validity.png"}


def test_reingesting_the_same_file_is_a_no_op(pipeline, first_pair, train):
    from flows.ingest import ingest

    before = store.manifest(pipeline.store(SPEC.name))
    path = _drop(pipeline, train.iloc[:800], "batch-1-again.csv")
    content = path.read_bytes()
    (outcome,) = ingest(dataset=SPEC.name)
    assert outcome["status"] == "duplicate"
    assert store.manifest(pipeline.store(SPEC.name)) == before
    # Moved out of incoming (so the next run does not see it again), never deleted.
    assert not path.exists() and Path(outcome["archived"]).read_bytes() == content


def test_bad_batch_is_quarantined_nothing_trains_and_champion_is_unchanged(pipeline, first_pair, train):
    from flows.ingest import ingest

    champion = registry.champion_versions(pipeline)
    versions = _versions(pipeline, CLASSIFIER_MODEL)
    runs = sorted(pipeline.runs.iterdir())
    manifest = store.manifest(pipeline.store(SPEC.name))
    bad = train.iloc[1200:1400].astype(object).copy()
    bad.iloc[3, bad.columns.get_loc("age")] = ""
    bad.iloc[5, bad.columns.get_loc("race")] = "Martian"
    bad.iloc[7, bad.columns.get_loc("length_of_stay")] = 99999
    content = _drop(pipeline, bad, "batch-bad.csv").read_bytes()
    (outcome,) = ingest(dataset=SPEC.name)
    assert outcome["status"] == "quarantined"
    assert set(outcome["failed_columns"]) == {"age", "race", "length_of_stay"}
    quarantined = Path(outcome["quarantined_to"])
    assert quarantined.read_bytes() == content  # the file itself is kept, untouched
    assert json.loads(Path(outcome["validation"]).read_text())["success"] is False
    summary = Path(outcome["summary"]).read_text()
    assert "row 6 (line 7): 'Martian'" in summary and "column `age`" in summary
    assert store.manifest(pipeline.store(SPEC.name)) == manifest
    assert registry.champion_versions(pipeline) == champion
    assert _versions(pipeline, CLASSIFIER_MODEL) == versions and sorted(pipeline.runs.iterdir()) == runs


def test_classifier_on_shuffled_labels_fails_its_gate_and_is_not_promoted(pipeline, first_pair, train):
    from flows.ingest import ingest
    from flows.retrain import retrain

    champion = registry.champion_versions(pipeline)
    scrambled = train.iloc[800:].copy()  # 4 in 5 rows of the new store scrambled
    scrambled[SPEC.target] = np.random.default_rng(0).permutation(scrambled[SPEC.target].to_numpy())
    _drop(pipeline, scrambled, "batch-scrambled.csv")
    assert [o["status"] for o in ingest(dataset=SPEC.name)] == ["ingested"]  # its values meet the contract
    result = retrain(dataset=SPEC.name)
    assert not result["promoted"]
    assert registry.champion_versions(pipeline) == champion
    cv, gv = result["classifier_version"], result["generator_version"]
    assert registry.alias_version(CLASSIFIER_MODEL, registry.CHALLENGER, pipeline) == cv
    tags = registry.version_tags(CLASSIFIER_MODEL, cv, pipeline)
    assert tags["gates.passed"] == "False" and tags["gate.auc_floor.verdict"] == "fail"
    assert float(tags["gate.auc_floor.figure"]) < 0.65
    # The champion is scored on the same (now mostly scrambled) held-out rows, so the margin gate alone
    # would not catch it; the floor does. Both figures are on the tags either way.
    assert "gate.auc_vs_champion.figure" in tags
    # h failed first, so no generator was trained against it: no half pair to promote by mistake.
    assert gv is None and registry.alias_version(GENERATOR_MODEL, registry.CHALLENGER, pipeline) is None
