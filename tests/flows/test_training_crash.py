"""A retrain that crashes during training: its MLflow run (opened before training) ends FAILED, nothing is
registered, and the failure goes out through the notification block (the flow's on_failure hook)."""
from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from genre.core.datasets import get_spec, load_split
from tasks.registry import client as registry
from tasks.settings import CLASSIFIER_MODEL, PipelineSettings

pytestmark = pytest.mark.slow

SPEC = get_spec("compas")
OPEN_GATES = {"auc_margin": 1.0, "auc_floor": 0.0, "validity_floor": 0.0, "validity_h_floor": 0.0,
              "plausibility_floor": 0.0}


def test_a_crash_during_training_leaves_a_failed_run_and_an_alert(tmp_path, prefect_harness, pipeline_home):
    from flows.ingest import ingest
    from flows.retrain import retrain

    # 30 embedding dimensions cannot be split over 4 attention heads: the generator's first forward pass fails,
    # after h has trained: a real crash in the middle of the retrain.
    with pipeline_home(tmp_path, OPEN_GATES, generator_model={"emb": 30, "heads": 4}):
        settings = PipelineSettings.from_env()
        incoming = settings.incoming(SPEC.name)
        incoming.mkdir(parents=True)
        load_split(SPEC, "train").iloc[:400].to_csv(incoming / "batch-1.csv", index=False)
        assert [o["status"] for o in ingest(dataset=SPEC.name)] == ["ingested"]
        with pytest.raises(RuntimeError, match="is invalid for input of size"):
            retrain(dataset=SPEC.name)
        client = registry.configure_mlflow(settings)
        (run,) = client.search_runs([client.get_experiment_by_name(settings.experiment).experiment_id])
        assert run.info.status == "FAILED" and run.info.end_time is not None
        assert run.info.run_name.startswith("retrain-compas-")
        assert client.search_model_versions(f"name='{CLASSIFIER_MODEL}'") == []
        alerts = [json.loads(line) for line in (settings.home / "alerts.jsonl").read_text().splitlines()]
        (failure,) = [a for a in alerts if a["subject"].startswith("[genre] failure:")]
        assert "retrain-compas" in failure["subject"] and "is invalid for input of size" in failure["body"]
