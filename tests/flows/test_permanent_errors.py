"""A permanent error fails a run at once (issue 12): no champion yet is not retried, unlike a lost connection."""
from __future__ import annotations

import pytest

from genre.core.datasets import get_spec, load_split

SPEC = get_spec("compas")


def test_no_champion_fails_the_batch_at_once_without_retries(tmp_path, monkeypatch, prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.issue_recourse import issue_recourse

    monkeypatch.setenv("GENRE_HOME", str(tmp_path / "home"))
    for key in ("MLFLOW_TRACKING_URI", "GENRE_LEDGER_URL", "GENRE_PIPELINE_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "people.csv"
    load_split(SPEC, "test").head(20)[list(SPEC.features)].to_csv(path, index=False)
    state = issue_recourse(str(path), dataset=SPEC.name, return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="no champion pair in the registry yet"):
        state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    loads = [r for r in runs if r.name.startswith("load_champion_pair")]
    assert len(loads) == 1 and loads[0].state.is_failed()
    assert loads[0].run_count == 1  # tried once: `retries=2` is for transient errors only
