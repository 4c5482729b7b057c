"""Peak memory of a block of code: Python heap (tracemalloc) and resident set size (sampled).

tracemalloc sees what Python objects and numpy arrays allocate, but not torch's CPU allocator; the RSS
sampler (every few ms, from /proc/self/statm) sees everything the process holds, torch included, but also
whatever other threads allocate meanwhile. Both are reported; neither is timed (tracemalloc slows Python
code several-fold, so timings come from separate runs).
"""
from __future__ import annotations

import os
import resource
import threading
import tracemalloc

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size; falls back to the lifetime peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """`with PeakMemory() as m: ...` then `m.python_mb` (tracemalloc peak) and `m.rss_mb` (peak RSS growth)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.python_mb = float("nan")
        self.rss_mb = float("nan")

    def __enter__(self) -> "PeakMemory":
        self._base = rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        tracemalloc.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self._peak = max(self._peak, rss_bytes())
        self._stop.set()
        self._thread.join()
        self.python_mb = peak / 2**20
        self.rss_mb = (self._peak - self._base) / 2**20


def peak_memory_isolated(fn, timeout_s: float = 300.0) -> tuple[float, float, str]:
    """Run `fn()` in a forked child under `PeakMemory`: (Python MB, RSS growth MB, where measured).

    In the benchmark's own process earlier runs have already grown the heap, so a later run reuses freed
    memory and shows almost no RSS growth; a fresh child starts from the parent's state (copy-on-write)
    without that slack. The child runs torch on one thread (the bench does too). Where fork is unavailable,
    or the child fails or gives no answer within `timeout_s`, it measures in-process instead.
    """
    import multiprocessing as mp

    try:
        ctx = mp.get_context("fork")
    except ValueError:
        ctx = None
    if ctx is not None:
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(fn, send), daemon=True)
        child.start()
        send.close()
        got = recv.poll(timeout_s)
        result = recv.recv() if got else None
        child.join(5)
        if child.is_alive():
            child.kill()
        if result is not None:
            return result[0], result[1], "forked child"
    with PeakMemory() as mem:
        fn()
    return mem.python_mb, mem.rss_mb, "in-process"


def _child(fn, conn) -> None:
    try:
        import torch

        # A forked child must not enter the parent's intra-op thread pool: if the parent ran torch on several
        # threads, the first parallel op in the child deadlocks (measured: it hung until the timeout).
        torch.set_num_threads(1)
        with PeakMemory() as mem:
            fn()
        conn.send((mem.python_mb, mem.rss_mb))
    except BaseException:  # the parent falls back to measuring in-process
        conn.send(None)
    finally:
        conn.close()
