"""Serving recourse (issue 5) end to end: a tiny compas pair trained, registered and promoted by the real
retrain flow in a tmp GENRE_HOME, then `genre-recourse@champion` loaded through pyfunc, the `genre recourse`
CLI, and a real `mlflow models serve` process on a free loopback port (started here, stopped by its pid).
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from genre.core.datasets import get_spec, load_split
from tasks.registry import client as registry
from tasks.ledger.db import Ledger, ledger_url
from tasks.ledger.recorder import ServingLedger
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL, PipelineSettings

pytestmark = pytest.mark.slow

SPEC = get_spec("compas")
FEATURES = list(SPEC.features)
# Serving is under test, not the gates: a tiny generator's plausibility is low, so its floor is off here.
GATES = {"auc_margin": 0.02, "auc_floor": 0.65, "validity_floor": 0.5, "validity_h_floor": 0.5,
         "plausibility_floor": 0.0}


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness, pipeline_home):
    """A fresh GENRE_HOME whose registry holds one promoted tiny pair and its genre-recourse model."""
    from flows.ingest import ingest
    from flows.retrain import retrain

    home = tmp_path_factory.mktemp("serve-home")
    with pipeline_home(home, GATES, classifier_epochs=30, oracle_trees=30, n_factuals=60):
        settings = PipelineSettings.from_env()
        incoming = settings.incoming(SPEC.name)
        incoming.mkdir(parents=True)
        load_split(SPEC, "train").iloc[:900].to_csv(incoming / "batch-1.csv", index=False)
        ingest(dataset=SPEC.name)
        result = retrain(dataset=SPEC.name)
        assert result["promoted"], result["gates"]
        registry.configure_mlflow(settings)
        yield settings, result


@pytest.fixture(scope="module")
def rejected(served) -> pd.DataFrame:
    """20 test rows the champion h rejects, in the applicant's units."""
    test = load_split(SPEC, "test")[FEATURES]
    classifier, encoder = registry.load_classifier_version(served[1]["classifier_version"], served[0])
    score = classifier.predict_proba(encoder.transform(test))
    return test[score <= 0.5].head(20).reset_index(drop=True)


def _model():
    return mlflow.pyfunc.load_model(f"models:/{RECOURSE_MODEL}@champion")


def test_recourse_model_is_registered_and_promoted_with_its_pair(served):
    settings, result = served
    cv, gv, rv = result["classifier_version"], result["generator_version"], result["recourse_version"]
    assert registry.alias_version(RECOURSE_MODEL, registry.CHAMPION, settings) == rv
    assert registry.champion_versions(settings) == (cv, gv)
    tags = registry.version_tags(RECOURSE_MODEL, rv, settings)
    assert (tags["classifier_version"], tags["generator_version"], tags["dataset"]) == (cv, gv, "compas")
    info = mlflow.models.get_model_info(f"models:/{RECOURSE_MODEL}@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert [c.name for c in info.signature.inputs.inputs][: SPEC.d] == FEATURES


def _fake_pair(settings, tmp_path, with_recourse: bool) -> tuple[str, str]:
    """Register a further classifier/generator (and recourse) version: sources are empty folders."""
    client = registry.configure_mlflow(settings)
    cv = client.create_model_version(CLASSIFIER_MODEL, source=(tmp_path / "c").as_uri()).version
    gv = client.create_model_version(GENERATOR_MODEL, source=(tmp_path / "g").as_uri(),
                                     tags={"classifier_version": str(cv)}).version
    if with_recourse:
        client.create_model_version(RECOURSE_MODEL, source=(tmp_path / "r").as_uri(),
                                    tags={"classifier_version": str(cv), "generator_version": str(gv)})
    return str(cv), str(gv)


def _champions(settings):
    return (*registry.champion_versions(settings), registry.alias_version(RECOURSE_MODEL, registry.CHAMPION, settings))


def test_a_failed_recourse_alias_move_rolls_the_pair_back(served, monkeypatch, tmp_path):
    settings, result = served
    before = _champions(settings)
    cv, gv = _fake_pair(settings, tmp_path, with_recourse=True)
    original = MlflowClient.set_registered_model_alias
    moved = []

    def flaky(self, name, alias, version):
        if name == RECOURSE_MODEL and alias == registry.CHAMPION:
            raise RuntimeError("registry went away")
        moved.append((name, str(version)))
        return original(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", flaky)
    with pytest.raises(RuntimeError, match="went away"):
        registry.move_champion(cv, gv, settings)
    monkeypatch.undo()
    assert (CLASSIFIER_MODEL, cv) in moved and (GENERATOR_MODEL, gv) in moved  # both moved, then were put back
    assert _champions(settings) == before


def test_a_pair_without_a_recourse_model_takes_the_served_alias_away(served, tmp_path):
    settings, result = served
    before = _champions(settings)
    cv, gv = _fake_pair(settings, tmp_path, with_recourse=False)
    registry.move_champion(cv, gv, settings)
    assert _champions(settings) == (cv, gv, None)  # never a served model of another pair
    registry.move_champion(result["classifier_version"], result["generator_version"], settings)
    assert _champions(settings) == before


def test_pyfunc_answers_a_dataframe_and_every_row_lands_in_the_ledger(served, rejected):
    settings, result = served
    people = rejected.head(6).astype(object)
    people.loc[4, "race"] = "Martian"
    people.loc[5, "age"] = "abc"
    ledger = Ledger(ledger_url(settings.home))
    issued_before = len(ledger.entries())
    served_before = len(ServingLedger(ledger_url(settings.home)).answers())
    out = _model().predict(people)
    assert len(out) == 6 and set(out["status"][:4]) <= {"ok", "no_valid_recourse"}
    assert (out["status"][:4] == "ok").sum() >= 2
    assert out["status"][4] == "invalid_input" and "'race'" in out["reason"][4] and "Martian" in out["reason"][4]
    assert out["status"][5] == "invalid_input" and "'age'" in out["reason"][5] and "abc" in out["reason"][5]
    ok = out[out["status"] == "ok"]
    assert (ok["probability"].astype(float) > 0.5).all() and (ok["cost"].astype(float) > 0).all()
    assert all(isinstance(c, list) and all(f in FEATURES for f in c) for c in ok["changed"])
    assert (ok["classifier_version"] == result["classifier_version"]).all()
    # Every answered row is recorded; the ok ones also as issued recourse that monitoring re-judges.
    answers = ServingLedger(ledger_url(settings.home)).answers()
    assert len(answers) == served_before + 6
    assert answers["status"].tail(6).tolist() == out["status"].tolist()
    assert answers["id"].tail(6).tolist() == out["ledger_id"].tolist()
    entries = ledger.entries()
    assert len(entries) == issued_before + len(ok)
    assert entries["recourse"].tail(len(ok)).tolist() == [{f: r[f] for f in FEATURES} for r in ok.to_dict("records")]
    ledger.dispose()


def test_the_cli_round_trips_a_csv(served, rejected, tmp_path):
    from genre.cli import main as cli

    people = rejected.head(5).copy()
    people.insert(0, "applicant_id", [f"p{i}" for i in range(5)])
    src, dst = tmp_path / "people.csv", tmp_path / "recourse.csv"
    people.to_csv(src, index=False)
    assert cli.main(["recourse", "--input", str(src), "--output", str(dst)]) == 0
    out = pd.read_csv(dst, keep_default_na=False, dtype=str)
    assert out["applicant_id"].tolist() == people["applicant_id"].tolist()
    assert set(out["status"]) <= {"ok", "no_valid_recourse"} and (out["status"] == "ok").any()
    direct = _model().predict(people[FEATURES])  # the same rows answered in-process: the same recourse
    for f in FEATURES:
        assert out[f].tolist() == ["" if v is None else str(v) for v in direct[f]]
    entries = Ledger(ledger_url(served[0].home)).entries()
    assert set(out.loc[out["status"] == "ok", "applicant_id"]) <= set(entries["applicant_id"])


def test_cli_missing_column_is_a_clear_error(served, rejected, tmp_path, capsys):
    from genre.cli import main as cli

    src = tmp_path / "people.csv"
    rejected.drop(columns=["priors_count"]).to_csv(src, index=False)
    assert cli.main(["recourse", "--input", str(src), "--output", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "priors_count" in err and "people.csv" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read(), parse_constant=_reject_constant)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name} in the response")


@pytest.fixture(scope="module")
def server(served):
    """`mlflow models serve` on the champion genre-recourse, on a free loopback port; stopped by its pid."""
    port = _free_port()
    log = served[0].home / "serve.log"
    # mlflow runs `uvicorn` by name: the venv's bin must be on PATH.
    env = {**os.environ, "MLFLOW_TRACKING_URI": served[0].mlflow_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
           f"models:/{RECOURSE_MODEL}@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the server did not answer /ping in 90 s: {log.read_text()[-3000:]}")
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its gunicorn/uvicorn workers
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_http_answers_valid_recourse_and_a_clear_error_for_a_bad_row(served, rejected, server):
    people = rejected.head(4).astype(object)
    people.loc[3, "length_of_stay"] = 99999
    rows = json.loads(people.to_json(orient="split", index=False))
    status, body = _post(server, {"dataframe_split": rows})
    assert status == 200, body
    answers = pd.DataFrame(body["predictions"])
    assert len(answers) == 4
    assert answers["status"][3] == "invalid_input"
    assert "'length_of_stay'" in answers["reason"][3] and "99999" in answers["reason"][3]
    ok = answers[answers["status"] == "ok"]
    assert len(ok) >= 1 and (ok["probability"] > 0.5).all()
    # `changed` is a JSON array in the answer, not a string holding one.
    assert all(isinstance(c, list) and c and set(c) <= set(FEATURES) for c in ok["changed"])
    # The same rows in-process give the same answers (each row's random numbers come from its own values).
    direct = _model().predict(people)
    for f in [*FEATURES, "status", "changed", "cost"]:
        assert [r[f] for r in body["predictions"]] == direct[f].tolist()
    # Strict JSON: nulls, never NaN (the parser above refuses NaN outright).
    assert all(not (isinstance(v, float) and math.isnan(v)) for r in body["predictions"] for v in r.values())


def test_http_missing_column_fails_the_request_naming_it(served, rejected, server):
    rows = json.loads(rejected.head(2).drop(columns=["age"]).to_json(orient="split", index=False))
    status, body = _post(server, {"dataframe_split": rows})
    assert status == 400 and "age" in body["message"]


def test_a_ledger_failure_still_answers_and_spools_the_rows(served, rejected, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from tasks.serving.recourse_model import RecourseModel, recourse_artifacts

    settings, result = served
    monkeypatch.setenv("GENRE_LEDGER_URL", "sqlite:////proc/no-such-dir/ledger.db")  # cannot be created
    monkeypatch.setenv("GENRE_HOME", str(tmp_path))
    model = RecourseModel()
    model.load_context(SimpleNamespace(artifacts=recourse_artifacts(
        Path(result["run_dir"]), result["classifier_version"], result["generator_version"], result["run_id"])))
    out = model.predict(None, rejected.head(3))
    assert len(out) == 3 and set(out["status"]) <= {"ok", "no_valid_recourse"}
    assert out["ledger_id"].tolist() == [None, None, None]
    spooled = [json.loads(line) for line in (tmp_path / "serving" / "ledger-spool.jsonl").read_text().splitlines()]
    assert [r["served"]["status"] for r in spooled] == out["status"].tolist()


def test_a_server_with_genre_compile_answers_single_rows_as_the_eager_one(served, rejected, monkeypatch,
                                                                           compile_setting):
    """`GENRE_COMPILE=1` (issue 14): load_context compiles the served setting before the first request, and
    every single-row answer is the eager server's, value for value."""
    from types import SimpleNamespace

    from tasks.serving.recourse_model import RecourseModel, recourse_artifacts

    settings, result = served
    assert settings.training.k == compile_setting["k"]  # the setting the other compiling tests share
    monkeypatch.setenv("GENRE_SERVING_LEDGER", "off")
    artifacts = SimpleNamespace(artifacts=recourse_artifacts(
        Path(result["run_dir"]), result["classifier_version"], result["generator_version"], result["run_id"]))
    eager = RecourseModel()
    eager.load_context(artifacts)
    monkeypatch.setenv("GENRE_COMPILE", "1")
    fast = RecourseModel()
    fast.load_context(artifacts)
    assert eager.genre.compiled is None
    assert [e["compiled"] for e in fast.genre.compiled.events] == [True]
    for i in range(len(rejected)):
        row = rejected.iloc[i : i + 1].reset_index(drop=True)
        pd.testing.assert_frame_equal(fast.predict(None, row), eager.predict(None, row))


# ---- honouring issued recourse (issue 13) -------------------------------------------------------------------
def _promise(settings, result) -> tuple[dict, dict, int, int]:
    """A recourse the served champion itself would refuse (a promise made under an earlier model), recorded
    for applicant 'ret-1', and one recorded under a row number ('7', not a real id). Returns factual,
    recourse and both ledger ids."""
    from tasks.ledger.db import Issued

    classifier, encoder = registry.load_classifier_version(result["classifier_version"], settings)
    test = load_split(SPEC, "test")[FEATURES]
    moved = test.copy()
    moved["length_of_stay"] = moved["length_of_stay"] + 3
    refused = (classifier.predict_proba(encoder.transform(test)) <= 0.5) & (
        classifier.predict_proba(encoder.transform(moved)) <= 0.5)
    i = int(refused.nonzero()[0][0])
    factual = {k: (v.item() if hasattr(v, "item") else v) for k, v in test.iloc[i].to_dict().items()}
    recourse = {k: (v.item() if hasattr(v, "item") else v) for k, v in moved.iloc[i].to_dict().items()}
    entry = dict(dataset=SPEC.name, factual=factual, recourse=recourse, cost=0.03, score_factual=0.3,
                 score_recourse=0.6, classifier_version=result["classifier_version"],
                 generator_version=result["generator_version"])
    ledger = Ledger(ledger_url(settings.home))
    try:
        real, = ledger.record([Issued(applicant_id="ret-1", real_id=True, **entry)], batch_id="promise")
        row_number, = ledger.record([Issued(applicant_id="7", real_id=False, **entry)], batch_id="promise")
    finally:
        ledger.dispose()
    return factual, recourse, real, row_number


def test_a_returning_applicant_who_met_the_recourse_is_accepted_by_commitment(served, monkeypatch):
    settings, result = served
    factual, recourse, real, row_number = _promise(settings, result)
    monkeypatch.delenv("GENRE_HONOUR_RECOURSE", raising=False)
    people = pd.DataFrame([recourse, factual, recourse, recourse, recourse | {"race": "Other" if
                           recourse["race"] != "Other" else "African-American"}]).astype(object)
    people.insert(0, "applicant_id", ["ret-1", "ret-1", None, "7", "ret-1"])
    out = _model().predict(people)
    # Met, with a real id: accepted on the commitment, naming the ledger entry and the issuing versions.
    assert out["status"][0] == "accepted_by_commitment", out.iloc[0].to_dict()
    assert f"#{real}" in out["reason"][0] and f"classifier v{result['classifier_version']}" in out["reason"][0]
    promise = json.loads(out["commitment"][0])
    assert promise["ledger_ids"] == [real] and promise["issued_by"] == [
        {"classifier_version": result["classifier_version"], "generator_version": result["generator_version"]}]
    # Not met (the applicant comes back unchanged), no id, a row-number id, an immutable changed: the champion judges.
    for i in (1, 2, 3):
        assert out["status"][i] in ("ok", "no_valid_recourse"), (i, out.iloc[i].to_dict())
    for i in (1, 2, 3, 4):  # the changed immutable may make the champion accept: then it does so on its own
        assert out["status"][i] != "accepted_by_commitment" and out["commitment"][i] is None
    # Every honoured answer is recorded, pointing at the ledger entry it kept.
    serving = ServingLedger(ledger_url(settings.home))
    answers = serving.answers().set_index("id")
    assert answers.loc[out["ledger_id"][0], "status"] == "accepted_by_commitment"
    honoured = serving.honoured()
    assert honoured[["served_answer_id", "recourse_id", "applicant_id"]].values.tolist()[-1] == [
        out["ledger_id"][0], real, "ret-1"]
    assert len(honoured[honoured["served_answer_id"].isin(out["ledger_id"][1:])]) == 0
    serving.dispose()


def test_honouring_is_switched_off_by_the_environment(served, monkeypatch):
    settings, result = served
    _, recourse, _, _ = _promise(settings, result)
    monkeypatch.setenv("GENRE_HONOUR_RECOURSE", "off")
    people = pd.DataFrame([recourse]).astype(object)
    people.insert(0, "applicant_id", ["ret-1"])
    out = _model().predict(people)
    assert out["status"][0] in ("ok", "no_valid_recourse") and out["commitment"][0] is None


def test_the_returning_applicant_lookup_uses_the_index(served):
    """EXPLAIN the very statement `Ledger.issued_to` sends (caught on its way to SQLite), with its parameters."""
    from sqlalchemy import event

    settings, _ = served
    ledger = Ledger(ledger_url(settings.home))
    sent = []

    def catch(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "recourse" in statement:
            sent.append((statement, parameters))

    event.listen(ledger.engine, "before_cursor_execute", catch)
    try:
        ledger.issued_to("compas", ["ret-1", "x"])
        assert len(sent) == 1, sent
        statement, parameters = sent[0]
        with ledger.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    finally:
        event.remove(ledger.engine, "before_cursor_execute", catch)
        ledger.dispose()
    assert any("ix_recourse_dataset_applicant" in str(row) for row in plan), plan


def test_load_context_freezes_the_heap_and_a_swapped_out_pair_is_still_collected(served, monkeypatch):
    """Issue 14: the served process moves what it loaded out of the collector's way (`settle_heap`), and the next
    settle (after a champion swap) collects what was dropped instead of keeping it frozen."""
    import gc
    import weakref
    from types import SimpleNamespace

    from tasks.serving.recourse_model import RecourseModel, recourse_artifacts, settle_heap

    settings, result = served
    monkeypatch.setenv("GENRE_SERVING_LEDGER", "off")
    model = RecourseModel()
    model.load_context(SimpleNamespace(artifacts=recourse_artifacts(
        Path(result["run_dir"]), result["classifier_version"], result["generator_version"], result["run_id"])))
    assert gc.get_freeze_count() > 0
    old = weakref.ref(model.genre)
    model.genre.cycle = model.genre  # a reference cycle: only the collector frees it
    model.genre = None
    assert old() is not None  # frozen: not collected by an ordinary pass
    gc.collect()
    assert old() is not None
    settle_heap()
    assert old() is None
