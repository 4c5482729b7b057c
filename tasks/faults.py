"""Fault injection for the fault suite (tests/faults): `GENRE_FAULT=<point>` makes the process kill itself
with SIGKILL when it reaches that named point, exactly as `kill -9` from outside would, so a test can stop a
real retrain at a precise moment and then check what the next run recovers. Unset (always, outside the
tests), `fault_point` does nothing.

Points: `during_training` (h trained, the generator not yet), `after_classifier_version` (the classifier
version just created, nothing else of the pair), `between_alias_moves` (`genre-classifier@champion` moved,
`genre-generator` and `genre-recourse` not yet).
"""
from __future__ import annotations

import os
import signal
import sys

FAULT = "GENRE_FAULT"
POINTS = ("during_training", "after_classifier_version", "between_alias_moves")


def fault_point(name: str) -> None:
    """SIGKILL this process if GENRE_FAULT names this point."""
    assert name in POINTS, name
    if os.environ.get(FAULT) == name:
        print(f"GENRE_FAULT={name}: killing pid {os.getpid()} with SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
