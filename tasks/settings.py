"""Pipeline settings: read once from the environment and `configs/pipeline.yaml`, then passed down.

Environment: GENRE_HOME (default `.genre`; the story named by its `current` file, see `tasks.home`), GENRE_DATA_DIR, MLFLOW_TRACKING_URI (default SQLite under
GENRE_HOME), GENRE_PIPELINE_CONFIG (default `configs/pipeline.yaml` in the repo).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from tasks.home import state_home

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pipeline.yaml"
EXPERIMENT = "genre-pipeline"
CLASSIFIER_MODEL = "genre-classifier"
GENERATOR_MODEL = "genre-generator"
RECOURSE_MODEL = "genre-recourse"  # the pair served as one model (issue 5)
PROMOTED_EVENT = "genre.classifier.promoted"


@dataclass(frozen=True)
class GateConfig:
    auc_margin: float = 0.02
    auc_floor: float = 0.6
    validity_floor: float = 0.8
    validity_h_floor: float = 0.9
    plausibility_floor: float = 0.6


@dataclass(frozen=True)
class CommitmentConfig:
    """Recourse is a promise (issue 13): the commitment gate at promotion and honouring at serving time."""

    window_days: float | None = None  # recourse issued in the last this many days is re-scored; None: all of it
    max_voided: float = 0.05  # the gate fails when a larger share would no longer be accepted by the challenger
    honour: bool = True  # serving answers `accepted_by_commitment` to a returning applicant who met the recourse
    tolerance: float = 0.0  # share of a numeric feature's training range an applicant may fall short by
    anchor_weight: float = 4.0  # weight of each issued recourse added as a favourable row by `retrain --keep-promise`

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_voided <= 1.0:
            raise ValueError(f"commitment.max_voided must lie in [0, 1], got {self.max_voided}")
        if self.window_days is not None and self.window_days <= 0:
            raise ValueError(f"commitment.window_days must be positive (or null: all), got {self.window_days}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"commitment.tolerance must lie in [0, 1), got {self.tolerance}")
        if self.anchor_weight <= 0:
            raise ValueError(f"commitment.anchor_weight must be positive, got {self.anchor_weight}")


# GenRe's selection rules the pipeline can serve: knn_vote also needs the training rows at answer time.
PIPELINE_SELECT_RULES = ("max_prob", "min_cost", "robust", "robust_min_cost")


@dataclass(frozen=True)
class TrainingConfig:
    classifier_epochs: int = 100
    generator_epochs: int | None = None  # at most this many (the recipe's own count when lower); None: the recipe's
    generator_patience: int | None = None
    generator_model: dict = field(default_factory=dict)  # GeneratorConfig overrides (tests use a tiny one)
    # other TrainConfig overrides (batch_size, lr, ...; `pairs`: PairConfig fields such as gamma and lam)
    generator_train: dict = field(default_factory=dict)
    oracle_trees: int = 100
    holdout_percent: int = 20
    n_factuals: int = 200
    k: int = 10
    temperature: float = 0.1
    select: str = "max_prob"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.select not in PIPELINE_SELECT_RULES:
            raise ValueError(f"training.select must be one of {PIPELINE_SELECT_RULES}, got '{self.select}'")


@dataclass(frozen=True)
class PipelineSettings:
    home: Path
    data_dir: Path | None
    mlflow_uri: str
    gates: GateConfig = field(default_factory=GateConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    commitment: CommitmentConfig = field(default_factory=CommitmentConfig)
    experiment: str = EXPERIMENT

    @classmethod
    def from_env(cls, config: str | Path | None = None, **overrides) -> "PipelineSettings":
        home = state_home()
        data_dir = os.environ.get("GENRE_DATA_DIR")
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        path = Path(config or os.environ.get("GENRE_PIPELINE_CONFIG") or DEFAULT_CONFIG)
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
        settings = cls(
            home=home, data_dir=Path(data_dir).resolve() if data_dir else None, mlflow_uri=uri,
            gates=_section(GateConfig, raw.get("gates")), training=_section(TrainingConfig, raw.get("training")),
            commitment=_section(CommitmentConfig, raw.get("commitment")),
        )
        return replace(settings, **overrides)

    # ---- where things live under GENRE_HOME -------------------------------------------------
    def incoming(self, dataset: str) -> Path:
        return self.home / "incoming" / dataset

    def processed(self, dataset: str) -> Path:
        return self.home / "processed" / dataset

    def quarantine(self, dataset: str) -> Path:
        return self.home / "quarantine" / dataset

    def store(self, dataset: str) -> Path:
        return self.home / "store" / dataset

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def artifact_location(self) -> str | None:
        """A new experiment's artifact location: under GENRE_HOME for a local store; None (the tracking
        server's proxied `mlflow-artifacts:/`) when MLflow is reached over HTTP (`make up`)."""
        return None if is_remote(self.mlflow_uri) else self.artifact_root.as_uri()


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def _section(cls, values: dict | None):
    known = {f.name for f in fields(cls)}
    unknown = set(values or {}) - known
    if unknown:
        raise ValueError(f"{DEFAULT_CONFIG.name}: unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(known)}")
    return cls(**(values or {}))


@contextmanager
def temporary_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (a value) or unset (None) these environment variables for the block; each comes back as it was."""
    before = {k: os.environ.get(k) for k in values}
    try:
        _set_env(values)
        yield
    finally:
        _set_env(before)


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

