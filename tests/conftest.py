"""Shared test set-up: the paper's data splits from `../shared/data/cf-data` beside the clone."""
from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cf-data"


def pytest_configure(config) -> None:
    # Tests never download: point the loader at the shared copy unless the caller chose a folder.
    if not os.environ.get("GENRE_DATA_DIR") and SHARED_DATA.is_dir():
        os.environ["GENRE_DATA_DIR"] = str(SHARED_DATA)
