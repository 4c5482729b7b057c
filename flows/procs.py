"""Background processes recorded in pid files, for services that have no start/stop tool of their own (the
MLflow tracking server, the Prefect worker, Dask scheduler and workers).

Each process starts in a session of its own (so its children share its process group) with its output in
`<folder>/<name>.log`; `<folder>/<name>.pid` records its pid and start time, so a recycled pid is never
signalled. `stop` signals the whole group in turn (e.g. SIGINT, then SIGTERM), then SIGKILLs what is left.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tasks.liveness import process_start_time


def pid_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.pid"


def spawn(folder: Path, name: str, cmd: list[str], env: dict, cwd: Path | None = None) -> int:
    """Start `cmd` in its own session, log to `<name>.log`, record `<name>.pid`; refuse a live record."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if running(folder, name):
        raise RuntimeError(f"{name} is already running (pid {read(folder, name)['pid']}, {pid_path(folder, name)})")
    with open(folder / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    tmp = folder / f".{name}.pid.tmp"
    tmp.write_text(json.dumps({"pid": proc.pid, "start": process_start_time(proc.pid), "cmd": cmd[:4]}))
    tmp.replace(pid_path(folder, name))
    return proc.pid


def read(folder: Path, name: str) -> dict | None:
    try:
        return json.loads(pid_path(folder, name).read_text())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    try:  # our own child (tests start services in-process): a zombie still answers /proc
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int, start: str | None) -> bool:
    _reap(pid)
    now = process_start_time(pid)
    if now is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and (start is None or now == start)


def running(folder: Path, name: str) -> bool:
    record = read(folder, name)
    return bool(record) and alive(record["pid"], record.get("start"))


def group_members(pgid: int) -> list[int]:
    """Live pids in process group `pgid` (read from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(folder: Path, name: str, signals: tuple[int, ...] = (signal.SIGTERM,), wait: float = 20.0) -> str | None:
    """Stop the recorded process and its process group; returns a line saying what happened (None: no record)."""
    record = read(folder, name)
    if record is None:
        return None
    pid, start = record["pid"], record.get("start")
    if not alive(pid, start):
        pid_path(folder, name).unlink(missing_ok=True)
        return f"{name} (pid {pid}) was not running"
    pgid = os.getpgid(pid)
    for sig in (*signals, signal.SIGKILL):
        _signal_group(pgid, sig)
        deadline = time.monotonic() + (wait if sig != signal.SIGKILL else 5.0)
        while time.monotonic() < deadline and (alive(pid, start) or group_members(pgid)):
            time.sleep(0.2)
        if not alive(pid, start) and not group_members(pgid):
            pid_path(folder, name).unlink(missing_ok=True)
            how = "" if sig in signals else " (needed SIGKILL)"
            return f"{name} (pid {pid}) stopped{how}"
    return f"{name} (pid {pid}) DID NOT STOP"
