"""Who owns a piece of pipeline state, and is it still alive? Used to tell a killed run's leftovers from
work in progress.

- `RetrainLock`: an exclusive `flock` on `GENRE_HOME/locks/retrain.lock`, held by every retrain for its whole
  run (direct `python -m flows.retrain`, `make run`, or a deployment run). The kernel drops it when the
  process dies, however it dies, so "the lock is free" means "no retrain is alive" on this GENRE_HOME.
- `owner_tag()` / `owner_alive(tag)`: host, pid and the process's start time, written as a tag on each MLflow
  run the pipeline starts; a pid reused by another process does not pass for the owner.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

OWNER_TAG = "genre.owner"


def process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks after boot


def owner_tag() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": process_start_time(os.getpid())})


def owner_alive(tag: str | None) -> bool | None:
    """True / False for an owner on this host; None when it cannot be told (no tag, another host)."""
    try:
        owner = json.loads(tag) if tag else None
    except ValueError:
        return None
    if not owner or owner.get("host") != socket.gethostname():
        return None
    started = process_start_time(int(owner["pid"]))
    return started is not None and (owner.get("start") is None or started == owner["start"])


class RetrainBusy(RuntimeError):
    """Another retrain held the lock for longer than we were willing to wait."""


class RetrainLock:
    """The retrain lock of one GENRE_HOME (see the module docstring)."""

    def __init__(self, home: Path):
        self.path = Path(home) / "locks" / "retrain.lock"

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def alive(self) -> bool:
        """Whether some process holds the lock now (this process's own hold counts too)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False

    @contextmanager
    def held(self, timeout: float | None = None, log=None):
        """Hold the lock for the block, waiting for another retrain to end (at most `timeout` seconds)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            told = False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told and log is not None:
                        log.info("another retrain holds %s (%s): waiting for it to end", self.path, self.holder())
                        told = True
                    if deadline is not None and time.monotonic() > deadline:
                        raise RetrainBusy(f"another retrain ({self.holder()}) still holds {self.path} after "
                                          f"{timeout:.0f} s") from None
                    time.sleep(0.5)
            fh.seek(0)
            fh.truncate()
            fh.write(owner_tag() + "\n")
            fh.flush()
            yield
        finally:
            fh.close()  # closing the descriptor releases the flock
