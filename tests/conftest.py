"""Shared test set-up: the paper's data splits from `../shared/data/cf-data` beside the clone, and (for the
flow and fault tests) one temporary Prefect API for the session and a tiny training config."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import yaml

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cf-data"


def pytest_configure(config) -> None:
    # Tests never download: point the loader at the shared copy unless the caller chose a folder.
    if not os.environ.get("GENRE_DATA_DIR") and SHARED_DATA.is_dir():
        os.environ["GENRE_DATA_DIR"] = str(SHARED_DATA)
    # One OpenMP thread (set before anything loads the runtime; flows run as subprocesses inherit it): on
    # the shared 2-core machine, scikit-learn's gradient boosting (the retrain's second opinion) spun its
    # threads against other jobs and took 116 s instead of 0.3 s for 560 rows.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def prefect_harness():
    """Start Prefect's temporary server once (about 11 s) and keep it for every flow test."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        from prefect.settings import PREFECT_API_URL

        # The harness's API, for flows run as subprocesses (they would otherwise start their own server).
        yield PREFECT_API_URL.value()


# Quick training for flow tests: a small h, a tiny generator, few epochs (what is under test is the flow).
TINY_TRAINING = {
    "classifier_epochs": 40, "generator_epochs": 16, "generator_patience": 16,
    "generator_model": {"emb": 32, "heads": 2, "enc_layers": 1, "dec_layers": 2, "ff": 64, "value_hidden": 16},
    "generator_train": {"batch_size": 64}, "oracle_trees": 50, "n_factuals": 100, "k": 5,
}


@pytest.fixture(scope="session")
def compile_setting() -> dict:
    """The flow tests' generator shape and serving setting: the tests that compile single queries use this one,
    so that inductor compiles it once (about a minute here) and its on-disk cache serves the others."""
    return {"model": dict(TINY_TRAINING["generator_model"]), "k": TINY_TRAINING["k"], "temperature": 0.1,
            "monotone": True}


@contextlib.contextmanager
def _pipeline_home(home: Path, gates: dict, **training):
    """Point the pipeline at `home` with a pipeline.yaml of these `gates` and `TINY_TRAINING` (updated by
    `training`), and the default registry and ledger there; the previous environment comes back afterwards,
    so modules do not leak their stores into each other."""
    from tasks.settings import temporary_env

    config_path = home / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump({"gates": gates, "training": {**TINY_TRAINING, **training}}))
    with temporary_env({"GENRE_HOME": str(home), "GENRE_PIPELINE_CONFIG": str(config_path),
                        "MLFLOW_TRACKING_URI": None, "GENRE_LEDGER_URL": None}):
        yield


@pytest.fixture(scope="session")
def pipeline_home():
    """The `_pipeline_home(home, config)` context manager, for module-scoped pipeline fixtures."""
    return _pipeline_home


@pytest.fixture
def served_rows():
    """`served_rows(request, statuses)`: a serving-ledger request's rows as `tasks.ledger.recorder._rows` builds
    them (an `issued` recourse entry for each ok row; factual age 20 + i, recourse age 30 + i)."""
    from datetime import datetime, timezone

    def build(request: str, statuses: list[str]) -> list[dict]:
        now = datetime.now(timezone.utc)
        out = []
        for i, status in enumerate(statuses):
            applicant = f"{request}-applicant-{i}"
            issued = None
            if status == "ok":
                issued = dict(requested_at=now, batch_id=f"serve-{request}", applicant_id=applicant,
                              dataset="compas", factual={"age": 20 + i}, recourse={"age": 30 + i}, cost=0.1 * i,
                              score_factual=0.2, score_recourse=0.8, classifier_version="1", generator_version="1")
            served = dict(answered_at=now, request_id=request, row=i + 1, applicant_id=applicant, dataset="compas",
                          status=status, reason=None if status == "ok" else "x", applicant={"age": str(20 + i)},
                          answer={"status": status}, classifier_version="1", generator_version="1")
            out.append({"key": f"{request}#{i + 1}", "issued": issued, "served": served})
        return out

    return build
