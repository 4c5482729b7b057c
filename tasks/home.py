"""Where the pipeline's state lives: one rule for `make run`, `make deploy`, `make serve`, `genre recourse`,
the ledger CLI and every flow (issue 12).

`GENRE_HOME` (default `.genre` in the working directory) names the state folder. `make run` keeps each story
in its own `<GENRE_HOME>/story-<dataset>-<time>/` and, once the story has finished, writes that folder's name
into `<GENRE_HOME>/current`. A GENRE_HOME holding a `current` file means that story: its registry
(`mlflow.db`), ledger, store, reports and pids. So after `make run`, a deployed flow, `make serve` and
`genre recourse` all work on the story's state. Set GENRE_HOME to a story folder (or to any other folder) to
choose another one; delete `<GENRE_HOME>/current` to use GENRE_HOME itself.
"""
from __future__ import annotations

import os
from pathlib import Path

POINTER = "current"


def root_home() -> Path:
    """GENRE_HOME as given (default `.genre`), absolute; `make run` makes its story folders here."""
    return Path(os.environ.get("GENRE_HOME", ".genre")).resolve()


def state_home(root: Path | None = None) -> Path:
    """The folder holding the state: the story named by `<root>/current` when there is one, else the root."""
    root = Path(root).resolve() if root is not None else root_home()
    pointer = root / POINTER
    if pointer.is_file():
        name = pointer.read_text().strip()
        if name and (root / name).is_dir():
            return (root / name).resolve()
    return root


def point_current(root: Path, story: Path) -> None:
    """Make `story` (a folder under `root`) the state every other entry point uses, atomically."""
    tmp = root / f".{POINTER}.tmp"
    tmp.write_text(story.resolve().relative_to(root.resolve()).as_posix() + "\n")
    tmp.replace(root / POINTER)
