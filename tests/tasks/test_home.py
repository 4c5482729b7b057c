"""One state for every entry point (issue 12): GENRE_HOME, or the story `make run` last finished there."""
from __future__ import annotations

import pytest
from prefect.states import Failed

from genre.core.datasets import DataError
from tasks.home import point_current, root_home, state_home
from tasks.retry import PermanentError, transient_only


def test_a_finished_story_becomes_the_state_of_genre_home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    story = root / "story-compas-20261129T000000"
    story.mkdir(parents=True)
    monkeypatch.setenv("GENRE_HOME", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GENRE_LEDGER_URL", raising=False)
    assert state_home() == root.resolve()  # no story finished yet: GENRE_HOME itself
    point_current(root, story)
    assert (root / "current").read_text().strip() == story.name
    assert root_home() == root.resolve() and state_home() == story.resolve()

    from tasks.ledger.db import ledger_url
    from tasks.serving.serve import resolve_registry
    from tasks.settings import PipelineSettings

    # The registry, the ledger and the pipeline's folders all follow it ...
    assert PipelineSettings.from_env().home == story.resolve()
    assert ledger_url() == f"sqlite:///{story.resolve() / 'ledger.db'}"
    assert resolve_registry() == f"sqlite:///{story.resolve() / 'mlflow.db'}"
    # ... and `make serve` / `genre recourse` hand that state on to the server they start.
    import os

    assert os.environ["GENRE_HOME"] == str(story.resolve())
    # A story folder named directly is a state of its own.
    monkeypatch.setenv("GENRE_HOME", str(story))
    assert state_home() == story.resolve()


def test_a_pointer_to_a_removed_story_falls_back_to_genre_home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    story = root / "story-x"
    story.mkdir(parents=True)
    point_current(root, story)
    story.rmdir()
    assert state_home(root) == root.resolve()


@pytest.mark.parametrize("error, retried", [
    (PermanentError("no champion pair in the registry yet"), False),
    (DataError("a.csv", "empty value", row=3, column="age"), False),
    (FileNotFoundError("a.csv"), False),
    (ValueError("the champion classifier is for data set 'adult'"), False),
    (ConnectionError("server closed the connection unexpectedly"), True),
    (TimeoutError("database is locked"), True),
])
def test_only_transient_errors_are_retried(error, retried):
    assert transient_only(None, None, Failed(data=error)) is retried
