"""Settings read from the environment in one place, then passed down."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    data_dir: Path | None

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(os.environ.get("GENRE_HOME", ".genre")).resolve()
        data_dir = os.environ.get("GENRE_DATA_DIR")
        return cls(home=home, data_dir=Path(data_dir).resolve() if data_dir else None)

    @property
    def model_dir(self) -> Path:
        return self.home / "models"
