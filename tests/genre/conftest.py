"""Fixtures for the library tests: one compas protocol set-up per session, in a temporary GENRE_HOME."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from genre.evaluation.protocol import load_protocol
from genre.core.settings import Settings

# The authors' h (batch 2048, 100 epochs) trains in about a second on compas: the tests use it as it is.
QUICK_H: dict = {}


@pytest.fixture(scope="session")
def quick_h() -> dict:
    return dict(QUICK_H)


@pytest.fixture(scope="session")
def genre_settings(tmp_path_factory) -> Settings:
    data_dir = os.environ.get("GENRE_DATA_DIR")
    return Settings(home=tmp_path_factory.mktemp("genre_home"), data_dir=Path(data_dir) if data_dir else None)


@pytest.fixture(scope="session")
def compas_setup(genre_settings):
    return load_protocol("compas", seed=0, settings=genre_settings, progress=False, classifier_overrides=QUICK_H)
