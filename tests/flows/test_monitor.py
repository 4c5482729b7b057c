"""Batch recourse and monitoring flows against a real MLflow registry (SQLite in tmp) and tiny real models.

Story: pair 1 (trained on a compas sample) is champion and issues recourse; pair 2 (trained on a shifted
sample) is promoted; monitoring runs once per new champion, reports drift and how many issued recourses
the new classifier still accepts; a champion alias moved by hand with MlflowClient is caught by the poll.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from genre.core.classifier import Classifier, ClassifierConfig
from genre.core.datasets import get_spec, load_split, split_xy
from genre.core.encoding import MinMaxEncoder
from genre.core.generator import GeneratorConfig
from genre.core.train_generator import TrainConfig, train_generator
from tasks.registry import client as registry
from tasks.ledger.db import Ledger
from tasks.training.pyfunc_models import PIP_REQUIREMENTS, ClassifierModel, GeneratorModel
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PipelineSettings

# Two tiny pairs are trained once for the module (about a minute on a busy 2-core machine).
pytestmark = pytest.mark.slow

SPEC = get_spec("compas")
TINY_GENERATOR = GeneratorConfig(d=SPEC.d, emb=16, heads=2, enc_layers=1, dec_layers=1, ff=32, value_hidden=8)


def _shift(frame: pd.DataFrame) -> pd.DataFrame:
    """Older applicants with more priors: a real shift in two features."""
    out = frame.copy()
    out["age"] = out["age"] + 12
    out["priors_count"] = out["priors_count"] * 2 + 1
    return out


def _train_pair(frame: pd.DataFrame, seed: int):
    X, y = split_xy(frame, SPEC)
    encoder = MinMaxEncoder(SPEC).fit(X)
    Xe = encoder.transform(X)
    classifier = Classifier(ClassifierConfig(d=SPEC.d, epochs=20, seed=seed)).fit(Xe, y)
    genre = train_generator(Xe, y, encoder=encoder, classifier=classifier, config=TINY_GENERATOR,
                            train=TrainConfig(epochs=2, patience=2, seed=seed), progress=False)
    return classifier, encoder, genre


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two tiny trained pairs and the training snapshots they learned from."""
    root = tmp_path_factory.mktemp("snapshots")
    train = load_split(SPEC, "train").sample(n=2000, random_state=0).reset_index(drop=True)
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: more threads only contend
    try:
        for i, frame in enumerate((train.iloc[:1000], _shift(train.iloc[1000:]))):
            path = root / f"snapshot-{i + 1}.csv"
            frame.to_csv(path, index=False)
            out.append((*_train_pair(frame, seed=i), path))
    finally:
        torch.set_num_threads(threads)
    return out


def _register(pair, dataset_dir: Path, settings: PipelineSettings) -> tuple[str, str]:
    """Log and register a classifier/generator pair the way the pyfunc adapters expect; returns versions."""
    classifier, encoder, genre, snapshot = pair
    client = registry.configure_mlflow(settings)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    classifier.save(dataset_dir / "classifier.pt")
    (dataset_dir / "encoder.json").write_text(json.dumps(encoder.state_dict()))
    genre.save(dataset_dir / "genre")
    (dataset_dir / "sampling.json").write_text(json.dumps({"k": 10, "temperature": 0.1, "select": "max_prob"}))
    with mlflow.start_run():
        clf = mlflow.pyfunc.log_model(
            name="classifier", python_model=ClassifierModel(), pip_requirements=PIP_REQUIREMENTS,
            artifacts={"classifier": str(dataset_dir / "classifier.pt"), "encoder": str(dataset_dir / "encoder.json")},
            registered_model_name=CLASSIFIER_MODEL,
        )
        gen = mlflow.pyfunc.log_model(
            name="generator", python_model=GeneratorModel(), pip_requirements=PIP_REQUIREMENTS,
            artifacts={"genre": str(dataset_dir / "genre"), "sampling": str(dataset_dir / "sampling.json")},
            registered_model_name=GENERATOR_MODEL,
        )
    cv, gv = str(clf.registered_model_version), str(gen.registered_model_version)
    client.set_model_version_tag(CLASSIFIER_MODEL, cv, "dataset", SPEC.name)
    client.set_model_version_tag(CLASSIFIER_MODEL, cv, "training_data", str(snapshot))
    client.set_model_version_tag(GENERATOR_MODEL, gv, "classifier_version", cv)
    return cv, gv


@pytest.fixture()
def pipeline(tmp_path, monkeypatch, pairs, prefect_harness):
    """A fresh GENRE_HOME with an MLflow SQLite store holding pair 1 as champion and pair 2 registered."""
    monkeypatch.setenv("GENRE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    monkeypatch.delenv("GENRE_LEDGER_URL", raising=False)
    monkeypatch.delenv("GENRE_PIPELINE_CONFIG", raising=False)
    settings = PipelineSettings.from_env()
    versions = [_register(pair, tmp_path / f"pair{i}", settings) for i, pair in enumerate(pairs)]
    registry.move_champion(*versions[0], settings)
    return settings, versions


def _applicants(tmp_path: Path, n: int = 80) -> Path:
    test = load_split(SPEC, "test").head(n)
    frame = test[list(SPEC.features)].copy()
    frame.insert(0, "applicant_id", [f"app-{i:03d}" for i in range(n)])
    path = tmp_path / "applicants.csv"
    frame.to_csv(path, index=False)
    return path


def test_issue_recourse_gives_valid_recourse_and_records_it(pipeline, tmp_path):
    from flows.issue_recourse import issue_recourse

    settings, versions = pipeline
    path = _applicants(tmp_path)
    summary = issue_recourse(str(path), dataset="compas", out=str(tmp_path / "out.csv"))
    as_text = {"applicant_id": str} | {c: str for f in SPEC.categorical for c in (f, f"recourse.{f}")}
    results = pd.read_csv(tmp_path / "out.csv", dtype=as_text)
    assert len(results) == 80 and results["applicant_id"].tolist() == [f"app-{i:03d}" for i in range(80)]
    assert summary["rejected"] == int((results["score"] <= 0.5).sum()) > 0
    assert (results.loc[results["score"] > 0.5, "status"] == "accepted").all()
    issued = results[results["status"] == "recourse_issued"]
    assert summary["issued"] == len(issued) > 0
    assert (issued["score_recourse"] > 0.5).all()
    # Immutable features never change; categoricals stay in their domain.
    for f in SPEC.immutable:
        assert (issued[f"recourse.{f}"] == issued[f]).all()
    for f, domain in SPEC.categorical.items():
        assert set(issued[f"recourse.{f}"].astype(str)) <= set(domain)
    ledger = Ledger().entries("compas")
    assert len(ledger) == len(issued)
    assert set(ledger["classifier_version"]) == {versions[0][0]}
    assert set(ledger["generator_version"]) == {versions[0][1]}
    first = ledger.iloc[0]
    row = issued[issued["ledger_id"] == first["id"]].iloc[0]
    assert first["applicant_id"] == row["applicant_id"]
    assert first["recourse"]["priors_count"] == row["recourse.priors_count"]
    assert first["cost"] == pytest.approx(row["cost"])


def test_issue_recourse_names_a_bad_row(pipeline, tmp_path):
    from flows.issue_recourse import issue_recourse

    path = _applicants(tmp_path, n=5)
    frame = pd.read_csv(path)
    frame.loc[3, "race"] = "Martian"
    frame.to_csv(path, index=False)
    with pytest.raises(Exception, match=r"row 4.*column 'race'"):
        issue_recourse(str(path), dataset="compas")
    assert Ledger().entries().empty


def test_monitor_runs_once_per_new_champion(pipeline, tmp_path):
    from flows.issue_recourse import issue_recourse
    from flows.monitor import monitor, poll_champion

    settings, versions = pipeline
    (c1, _), (c2, g2) = versions
    issued = issue_recourse(str(_applicants(tmp_path)), dataset="compas")["issued"]

    first = poll_champion()
    assert first["status"] == "monitored" and first["classifier_version"] == c1
    assert first["previous_version"] is None and first["data_drift"] is None
    assert first["ledger_validity"][c1]["n"] == issued
    assert poll_champion()["status"] == "already_monitored"
    assert monitor(version=c1)["status"] == "already_monitored"

    registry.move_champion(c2, g2, settings)
    second = monitor(version=c2)  # what the promotion event triggers
    assert second["status"] == "monitored" and second["previous_version"] == c1
    assert {"age", "priors_count"} <= set(second["data_drift"]["drifted_columns"])
    assert 0 < second["data_drift"]["drift_share"] <= 1
    assert 0 <= second["prediction_drift"]["decision_flip_share"] <= 1
    by_version = second["recourse"]["ledger_still_valid_by_version"]
    assert set(by_version) == {c1} and 0 <= by_version[c1] <= 1
    assert second["ledger_validity"][c1]["n"] == issued
    assert poll_champion()["status"] == "already_monitored"

    out = settings.reports / c2
    for name in ("data_drift", "prediction_drift", "recourse"):
        assert (out / f"{name}.html").stat().st_size > 0
        assert json.loads((out / f"{name}.json").read_text())["metrics"]
    assert (out / "ledger_validity.png").read_bytes()[:4] == b"\x89PNG"
    run = MlflowClient(settings.mlflow_uri).get_run(second["mlflow_run_id"])
    assert run.info.artifact_uri.startswith(settings.artifact_root.resolve().as_uri())
    logged = {a.path for a in MlflowClient(settings.mlflow_uri).list_artifacts(second["mlflow_run_id"], "monitoring")}
    assert {"monitoring/recourse.html", "monitoring/data_drift.json", "monitoring/ledger_validity.png"} <= logged
    tags = registry.version_tags(CLASSIFIER_MODEL, c2, settings)
    assert tags["monitoring.run_id"] == second["mlflow_run_id"]
    assert float(tags["monitoring.drift_share"]) == pytest.approx(second["data_drift"]["drift_share"])
    history = Ledger().validity_history(CLASSIFIER_MODEL)
    assert history["monitored_version"].tolist() == [c1, c2]


def test_poll_catches_an_alias_moved_with_mlflow_client(pipeline, tmp_path):
    from flows.monitor import poll_champion

    settings, versions = pipeline
    (c1, _), (c2, g2) = versions
    assert poll_champion()["classifier_version"] == c1
    # A person moves the classifier's alias in the MLflow UI: no promotion flow, no event, only the
    # registry changes, and the generator alias still names generator 1 (trained against classifier 1).
    client = MlflowClient(settings.mlflow_uri)
    client.set_registered_model_alias(CLASSIFIER_MODEL, "champion", c2)
    caught = poll_champion()
    assert caught["status"] == "monitored"
    assert (caught["classifier_version"], caught["generator_version"], caught["previous_version"]) == (c2, g2, c1)
    assert poll_champion()["status"] == "already_monitored"
    # Moving it back to a version monitored before does not monitor that version again.
    client.set_registered_model_alias(CLASSIFIER_MODEL, "champion", c1)
    assert poll_champion()["status"] == "already_monitored"
    assert Ledger().monitored(CLASSIFIER_MODEL)["version"].tolist() == [c1, c2]


def test_a_failed_monitoring_run_releases_its_claim(pipeline, tmp_path):
    from flows.monitor import monitor

    settings, versions = pipeline
    c1 = versions[0][0]
    snapshot = Path(registry.version_tags(CLASSIFIER_MODEL, c1, settings)["training_data"])
    hidden = snapshot.with_suffix(".hidden")
    snapshot.rename(hidden)  # the training snapshot is gone: monitoring cannot finish
    try:
        with pytest.raises(FileNotFoundError):
            monitor(version=c1)
    finally:
        hidden.rename(snapshot)
    assert monitor(version=c1)["status"] == "monitored"


def test_issue_recourse_resolves_a_mixed_alias_to_the_champion_classifier_and_its_generator(pipeline, tmp_path,
                                                                                          caplog):
    from flows.issue_recourse import issue_recourse

    settings, versions = pipeline
    (c1, g1), (_, g2) = versions
    # Someone points the generator's alias at a generator trained against another classifier. The classifier's
    # alias is the source of truth: recourse comes from classifier 1 and the generator trained against it, as
    # serving and monitoring resolve it, with a warning; the generator's alias is realigned.
    MlflowClient(settings.mlflow_uri).set_registered_model_alias(GENERATOR_MODEL, "champion", g2)
    summary = issue_recourse(str(_applicants(tmp_path, n=5)), dataset="compas")
    assert (summary["classifier_version"], summary["generator_version"]) == (c1, g1)
    assert f"{GENERATOR_MODEL}@champion is v{g2}, not a generator of the champion classifier v{c1}" in caplog.text
    assert registry.champion_versions(settings) == (c1, g1)
    assert set(Ledger().entries()["generator_version"]) <= {g1}


def test_validity_over_time_keeps_every_issuing_version_under_each_later_champion(pipeline, pairs, tmp_path):
    """Three champion versions (pair 1, pair 2, pair 1's models registered again as a third version): recourse
    issued by v1 and v2 is judged by every later champion; one MLflow metric per issuing version with the
    champion version as its step, one plot and one Evidently report with every version on them."""
    from flows.issue_recourse import issue_recourse
    from flows.monitor import monitor

    settings, versions = pipeline
    (c1, g1), (c2, g2) = versions
    c3, g3 = _register(pairs[0], tmp_path / "pair3", settings)
    issue_recourse(str(_applicants(tmp_path, n=60)), dataset="compas")
    monitor(version=c1)
    registry.move_champion(c2, g2, settings)
    monitor(version=c2)
    issue_recourse(str(_applicants(tmp_path, n=60)), dataset="compas")  # now issued by v2
    registry.move_champion(c3, g3, settings)
    third = monitor(version=c3)

    history = Ledger().validity_history(CLASSIFIER_MODEL, "compas")
    judged = {(r.issued_by, r.monitored_version): r.still_valid for r in history.itertuples()}
    assert set(judged) == {(c1, c1), (c1, c2), (c1, c3), (c2, c3)}
    assert judged[(c1, c3)] == pytest.approx(third["ledger_validity"][c1]["still_valid"])
    # MLflow: one run per data set, a metric per issuing version, stepped by the judging champion's version.
    client = MlflowClient(settings.mlflow_uri)
    run_id = third["validity_over_time"]["mlflow_run_id"]
    steps = {m.step: m.value for m in client.get_metric_history(run_id, f"still_valid_issued_by_v{c1}")}
    assert steps == {int(c): pytest.approx(judged[(c1, c)]) for c in (c1, c2, c3)}
    assert [m.step for m in client.get_metric_history(run_id, f"still_valid_issued_by_v{c2}")] == [int(c3)]
    # One Evidently report with every (issuing, judging) pair, and the plot.
    report = json.loads(Path(third["validity_over_time"]["files"]["json"]).read_text())
    assert len(report["metrics"]) == 4 and third["validity_over_time"]["pairs"] == 4
    values = sorted(round(float(m["value"]), 6) for m in report["metrics"])
    assert values == sorted(round(v, 6) for v in judged.values())
    assert Path(third["plot"]).read_bytes()[:4] == b"\x89PNG"

