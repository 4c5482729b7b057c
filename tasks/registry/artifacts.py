"""Load a model's files so that a broken one is named: a truncated `generator.pt` or `encoder.json` raises
`ArtifactError` with the file's path and what is wrong, not a bare `PytorchStreamReader` or JSON error."""
from __future__ import annotations

import json
from pathlib import Path

from genre.core.classifier import Classifier
from genre.core.encoding import MinMaxEncoder
from genre.core.generator import Generator


class ArtifactError(RuntimeError):
    """A model file that is missing or cannot be read; the message names the file."""


def load_artifact(path: str | Path, loader, what: str):
    """`loader(path)`, with any failure re-raised as an ArtifactError naming `what` and the file."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"the {what} {path} is missing")
    try:
        return loader(path)
    except Exception as exc:
        raise ArtifactError(f"cannot load the {what} {path} ({path.stat().st_size} bytes; truncated or corrupted?): "
                            f"{type(exc).__name__}: {exc}") from exc


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def load_json(path: str | Path, what: str) -> dict:
    return load_artifact(path, _json, what)


def load_encoder(path: str | Path) -> MinMaxEncoder:
    return load_artifact(path, lambda p: MinMaxEncoder.from_state_dict(_json(p)), "encoder")


def load_classifier(path: str | Path) -> Classifier:
    return load_artifact(path, Classifier.load, "classifier checkpoint")


def load_genre(folder: str | Path, encoder: MinMaxEncoder | None = None, classifier: Classifier | None = None):
    """A `GenRe` from a saved folder, each file loaded (and named if broken) on its own; `encoder` and
    `classifier` default to the folder's own copies."""
    from genre.core.sampler import SECOND_OPINION_FILE, GenRe

    import joblib

    folder = Path(folder)
    support = load_artifact(folder / "genre.json", _json, "GenRe metadata")["support"]
    second = folder / SECOND_OPINION_FILE
    return GenRe(
        load_artifact(folder / "generator.pt", Generator.load, "generator checkpoint"),
        encoder or load_encoder(folder / "encoder.json"),
        classifier or load_classifier(folder / "classifier.pt"),
        support=support,
        second_opinion=load_artifact(second, joblib.load, "second opinion") if second.exists() else None,
    )
