"""Champion moves as a pair or not at all: a mixed pair is refused, and a failed second move is undone."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tasks.registry import client as registry
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PipelineSettings


@pytest.fixture(scope="module")
def registry_settings(tmp_path_factory) -> PipelineSettings:
    """Two pairs registered once (creating an MLflow database takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("registry")
    settings = PipelineSettings.from_env(home=tmp_path, mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = registry.configure_mlflow(settings)
    for model in (CLASSIFIER_MODEL, GENERATOR_MODEL):
        client.create_registered_model(model)
    for pair in ("1", "2"):
        client.create_model_version(CLASSIFIER_MODEL, source=(tmp_path / f"c{pair}").as_uri())
        client.create_model_version(GENERATOR_MODEL, source=(tmp_path / f"g{pair}").as_uri(),
                                    tags={"classifier_version": pair})
    return settings


@pytest.fixture()
def settings(registry_settings) -> PipelineSettings:
    """The module's registry with no aliases set."""
    client = registry.configure_mlflow(registry_settings)
    for model in (CLASSIFIER_MODEL, GENERATOR_MODEL):
        for alias in (registry.CHAMPION, registry.CHALLENGER):
            if registry.alias_version(model, alias, registry_settings) is not None:
                client.delete_registered_model_alias(model, alias)
    return registry_settings


def test_a_pair_moves_together_and_drops_its_challenger_alias(settings):
    registry.set_alias(CLASSIFIER_MODEL, registry.CHALLENGER, "1", settings)
    registry.move_champion("1", "1", settings)
    assert registry.champion_versions(settings) == ("1", "1")
    assert registry.alias_version(CLASSIFIER_MODEL, registry.CHALLENGER, settings) is None


def test_a_mixed_pair_is_refused(settings):
    registry.move_champion("1", "1", settings)
    with pytest.raises(ValueError, match="mixed"):
        registry.move_champion("2", "1", settings)
    assert registry.champion_versions(settings) == ("1", "1")


def test_a_failed_generator_move_rolls_the_classifier_back(settings, monkeypatch):
    registry.move_champion("1", "1", settings)
    original = MlflowClient.set_registered_model_alias

    def flaky(self, name, alias, version):
        if name == GENERATOR_MODEL:
            raise RuntimeError("registry went away")
        return original(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", flaky)
    with pytest.raises(RuntimeError, match="went away"):
        registry.move_champion("2", "2", settings)
    monkeypatch.undo()
    assert registry.champion_versions(settings) == ("1", "1")


def test_first_promotion_failing_leaves_no_champion(settings, monkeypatch):
    original = MlflowClient.set_registered_model_alias
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias",
                        lambda self, n, a, v: (_ for _ in ()).throw(RuntimeError("down")) if n == GENERATOR_MODEL
                        else original(self, n, a, v))
    with pytest.raises(RuntimeError):
        registry.move_champion("1", "1", settings)
    monkeypatch.undo()
    assert registry.champion_versions(settings) == (None, None)
