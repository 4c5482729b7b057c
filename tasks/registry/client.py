"""The MLflow model registry as the pipeline sees it: a classifier/generator pair under shared aliases.

`genre-classifier` and `genre-generator` versions carry tags: `dataset`, `data_hash`, the classifier's
`training_data` (its store snapshot) and the generator's `classifier_version`; gate figures and verdicts
are tags too. They are created with their tags in one call (one database transaction).

The champion pair has one resolution, used by serving, batch recourse and monitoring alike
(`resolve_champion`): `genre-classifier@champion` is the source of truth, and the generator is the one
tagged with that classifier version (the `genre-generator@champion` one if it is, else the newest complete
one). A champion classifier with no such generator is refused everywhere (`MixedChampion`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from genre.core.classifier import Classifier
from genre.core.datasets import read_table
from genre.core.encoding import MinMaxEncoder
from tasks.registry.artifacts import ArtifactError
from tasks.faults import fault_point
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL, PipelineSettings

CHAMPION, CHALLENGER = "champion", "challenger"
# MLflow 3 opens an experiment on the view of its kind: this one trains models (not a GenAI app).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
ORPHAN = "genre.orphan"  # tag of a version whose run never finished (killed or crashed): never promoted
log = logging.getLogger(__name__)


class MixedChampion(RuntimeError):
    """The champion classifier has no complete generator trained against it: no pair can be served."""


def configure_mlflow(settings: PipelineSettings | None = None) -> MlflowClient:
    """Point MLflow at the settings' store and make sure the experiment exists with its artifact root."""
    settings = settings or PipelineSettings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    client = MlflowClient(settings.mlflow_uri, settings.mlflow_uri)
    ensure_experiment(client, settings.experiment, settings.artifact_location)
    mlflow.set_experiment(settings.experiment)
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id; created with its artifact location (a URI under GENRE_HOME, or None: a tracking
    server's proxied artifacts) and marked a model-training one."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by another process
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:  # an experiment made before the tag existed
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def _client(settings: PipelineSettings | None) -> MlflowClient:
    return configure_mlflow(settings)


def alias_version(model: str, alias: str, settings: PipelineSettings | None = None) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    try:
        return str(_client(settings).get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def champion_versions(settings: PipelineSettings | None = None) -> tuple[str | None, str | None]:
    """(classifier, generator) versions under `champion`; (None, None) before the first promotion."""
    return alias_version(CLASSIFIER_MODEL, CHAMPION, settings), alias_version(GENERATOR_MODEL, CHAMPION, settings)


def version_tags(model: str, version: str, settings: PipelineSettings | None = None) -> dict[str, str]:
    return dict(_client(settings).get_model_version(model, str(version)).tags)


def _load(model: str, version: str):
    """The pyfunc adapter of a version; a broken file is named with the version it belongs to."""
    try:
        return mlflow.pyfunc.load_model(f"models:/{model}/{version}").unwrap_python_model()
    except ArtifactError as exc:
        raise ArtifactError(f"{model} v{version}: {exc}") from exc


def load_classifier_version(version: str, settings: PipelineSettings | None = None) -> tuple[Classifier, MinMaxEncoder]:
    """h and its encoder from a registered `genre-classifier` version."""
    _client(settings)
    adapter = _load(CLASSIFIER_MODEL, version)
    return adapter.classifier, adapter.encoder


def load_generator_version(version: str, settings: PipelineSettings | None = None):
    """The `GenRe` (generator + its encoder and classifier) of a registered `genre-generator` version."""
    _client(settings)
    return _load(GENERATOR_MODEL, version).genre


def training_data_for(classifier_version: str, settings: PipelineSettings | None = None) -> pd.DataFrame:
    """The store snapshot a classifier version was trained on, typed by its data set's spec."""
    tags = version_tags(CLASSIFIER_MODEL, classifier_version, settings)
    path = Path(tags["training_data"])
    if not path.exists():
        raise FileNotFoundError(f"{CLASSIFIER_MODEL} v{classifier_version}: training snapshot {path} is gone")
    from tasks.data.specs import resolve_spec

    home = (settings or PipelineSettings.from_env()).home
    return read_table(path, resolve_spec(tags["dataset"], home))


def set_tags(model: str, version: str, tags: dict[str, object], settings: PipelineSettings | None = None) -> None:
    client = _client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(model, str(version), key, str(value))


def set_alias(model: str, alias: str, version: str, settings: PipelineSettings | None = None) -> None:
    _client(settings).set_registered_model_alias(model, alias, str(version))


def recourse_version_for(classifier_version: str, generator_version: str,
                         settings: PipelineSettings | None = None) -> str | None:
    """The `genre-recourse` version that bundles this pair (newest if several), or None."""
    try:
        found = _client(settings).search_model_versions(f"name='{RECOURSE_MODEL}'")
    except MlflowException:
        return None
    matches = [int(v.version) for v in found if v.tags.get("classifier_version") == str(classifier_version)
               and v.tags.get("generator_version") == str(generator_version) and ORPHAN not in v.tags]
    return str(max(matches)) if matches else None


def run_status(client: MlflowClient, run_id: str | None) -> str | None:
    """FINISHED / RUNNING / FAILED / KILLED, or None for a version with no run (or a run deleted since)."""
    if not run_id:
        return None
    try:
        return client.get_run(run_id).info.status
    except MlflowException:
        return None


def is_complete(client: MlflowClient, model: str, version: str) -> bool:
    """A version may be promoted or served: not tagged orphan, and its run (if it has one) finished."""
    v = client.get_model_version(model, str(version))
    return ORPHAN not in v.tags and run_status(client, v.run_id) in (None, "FINISHED")


@dataclass
class Champion:
    """The resolved champion: classifier, its generator, the recourse model bundling them (None if none)."""

    classifier_version: str | None
    generator_version: str | None = None
    recourse_version: str | None = None
    warnings: list[str] = field(default_factory=list)


def paired_generators(classifier_version: str, settings: PipelineSettings | None = None) -> list[str]:
    """Complete generator versions trained against a classifier version, oldest first."""
    client = _client(settings)
    found = client.search_model_versions(f"name='{GENERATOR_MODEL}'")
    return sorted((str(v.version) for v in found if v.tags.get("classifier_version") == str(classifier_version)
                   and ORPHAN not in v.tags and run_status(client, v.run_id) in (None, "FINISHED")), key=int)


def resolve_champion(settings: PipelineSettings | None = None) -> Champion:
    """The one champion pair (see the module docstring); `warnings` say where an alias disagreed with it."""
    classifier = alias_version(CLASSIFIER_MODEL, CHAMPION, settings)
    if classifier is None:
        return Champion(None)
    generator_alias = alias_version(GENERATOR_MODEL, CHAMPION, settings)
    paired = paired_generators(classifier, settings)
    if not paired:
        trained_for = (version_tags(GENERATOR_MODEL, generator_alias, settings).get("classifier_version")
                       if generator_alias else None)
        raise MixedChampion(
            f"{CLASSIFIER_MODEL}@champion is v{classifier}, which has no complete generator trained against it "
            f"({GENERATOR_MODEL}@champion is v{generator_alias}, trained against classifier v{trained_for}): "
            f"refusing a mixed pair. Move {CLASSIFIER_MODEL}@champion to a version with a generator, or retrain.")
    champion = Champion(classifier, generator_alias if generator_alias in paired else paired[-1])
    if champion.generator_version != generator_alias:
        champion.warnings.append(
            f"{GENERATOR_MODEL}@champion is v{generator_alias}, not a generator of the champion classifier "
            f"v{classifier} (was the classifier's alias moved by hand?): using v{champion.generator_version}, "
            f"the generator trained against it")
    champion.recourse_version = recourse_version_for(classifier, champion.generator_version, settings)
    served = alias_version(RECOURSE_MODEL, CHAMPION, settings)
    if served != champion.recourse_version:
        champion.warnings.append(f"{RECOURSE_MODEL}@champion is v{served}, not v{champion.recourse_version}, the "
                                 f"recourse model of classifier v{classifier} + generator v{champion.generator_version}")
    return champion


def realign_champion(settings: PipelineSettings | None = None) -> list[str]:
    """Point `genre-generator@champion` and `genre-recourse@champion` at the resolved pair (the classifier's
    alias is never moved); returns what was wrong, for the caller to warn about. Raises MixedChampion."""
    champion = resolve_champion(settings)
    if champion.classifier_version is None or not champion.warnings:
        return []
    client = _client(settings)
    client.set_registered_model_alias(GENERATOR_MODEL, CHAMPION, champion.generator_version)
    if champion.recourse_version is not None:
        client.set_registered_model_alias(RECOURSE_MODEL, CHAMPION, champion.recourse_version)
    elif alias_version(RECOURSE_MODEL, CHAMPION, settings) is not None:
        client.delete_registered_model_alias(RECOURSE_MODEL, CHAMPION)
    for w in champion.warnings:
        log.warning("champion realigned: %s", w)
    return champion.warnings


def move_champion(classifier_version: str, generator_version: str, settings: PipelineSettings | None = None) -> None:
    """Point `champion` at the pair and at the `genre-recourse` model bundling it, all or none: if a move
    fails, the earlier ones are undone. A pair with no recourse model (registered before it existed) takes
    `genre-recourse@champion` away, so that alias never serves a pair other than the champion. A version
    whose run did not finish (an orphan) is refused."""
    client = _client(settings)
    paired = client.get_model_version(GENERATOR_MODEL, str(generator_version)).tags.get("classifier_version")
    if paired != str(classifier_version):
        raise ValueError(f"{GENERATOR_MODEL} v{generator_version} was trained against classifier v{paired}, "
                         f"not v{classifier_version}: refusing a mixed champion pair")
    for model, version in ((CLASSIFIER_MODEL, classifier_version), (GENERATOR_MODEL, generator_version)):
        if not is_complete(client, model, version):
            raise ValueError(f"{model} v{version} is incomplete (its run did not finish): refusing to promote it")
    moves = [(CLASSIFIER_MODEL, str(classifier_version)), (GENERATOR_MODEL, str(generator_version)),
             (RECOURSE_MODEL, recourse_version_for(classifier_version, generator_version, settings))]
    done: list[tuple[str, str | None]] = []
    try:
        for model, version in moves:
            previous = alias_version(model, CHAMPION, settings)
            if version is not None:
                client.set_registered_model_alias(model, CHAMPION, version)
            elif previous is not None:
                client.delete_registered_model_alias(model, CHAMPION)
            done.append((model, previous))
            if model == CLASSIFIER_MODEL:
                fault_point("between_alias_moves")
    except Exception:
        for model, previous in reversed(done):
            if previous is None:
                if alias_version(model, CHAMPION, settings) is not None:
                    client.delete_registered_model_alias(model, CHAMPION)
            else:
                client.set_registered_model_alias(model, CHAMPION, previous)
        raise
    for model, version in moves:
        if version is not None and alias_version(model, CHALLENGER, settings) == version:
            client.delete_registered_model_alias(model, CHALLENGER)
