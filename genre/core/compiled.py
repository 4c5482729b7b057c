"""Single queries through a compiled graph (opt-in: `GenRe.compile_single_queries`, or `GENRE_COMPILE=1` for
the server; `genre bench` times it beside the eager path unless `--no-compile`).

A single query (one factual, k samples) is d small decoding steps of ~10 rows each: in eager mode, or even
through the TorchScript traces, most of its time is the interpreter's round trip per operation, not
arithmetic. `torch.compile` (inductor, `dynamic=False`) turns the whole loop, encoder to rounding, into one
graph of fused C++ kernels for the shapes of one (k, temperature, monotone) setting.

The samples are those of the eager path: the first call of a setting compiles it (one to four minutes on
this 2-core machine; inductor keeps the result in its on-disk cache, `TORCHINDUCTOR_CACHE_DIR`, so a later
process of the same generator shape takes seconds), then decodes a probe factual both ways and uses the
graph only when the two agree bit for bit. A setting that fails to compile or to agree falls back to the
eager path with a warning; an answer is never lost to the compiler.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import torch

from genre.core.classifier import one_thread
from genre.core.decoding import decode_unshared

log = logging.getLogger(__name__)

ENV = "GENRE_COMPILE"


def requested() -> bool:
    """Whether `GENRE_COMPILE` asks for compiled single queries (1, true, yes or on)."""
    return os.environ.get(ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class CompiledDecoder:
    """`decode_unshared` for one factual, compiled once per (k, temperature, monotone) of one GenRe."""

    def __init__(self, genre):
        self.genre = genre
        self._graphs: dict[tuple, object] = {}  # setting -> compiled function, or None: eager (it failed)
        self._lock = threading.Lock()
        self.events: list[dict] = []  # per setting: seconds to compile and check, or why it fell back

    def __call__(self, factuals: torch.Tensor, k: int, temperature: float, u: torch.Tensor,
                 monotone: bool) -> torch.Tensor:
        key = (int(k), float(temperature), bool(monotone))
        graph = self._graph(key)
        if graph is None:
            return self._eager(factuals, key, u)
        return graph(factuals, u)

    def warm_up(self, k: int, temperature: float, monotone: bool = False) -> bool:
        """Compile and check one setting now (a server does it before taking requests); True when compiled."""
        return self._graph((int(k), float(temperature), bool(monotone))) is not None

    def _graph(self, key: tuple):
        if key not in self._graphs:
            with self._lock:  # a server's threads compile a setting once
                if key not in self._graphs:
                    self._graphs[key] = self._build(key)
        return self._graphs[key]

    def _eager(self, factuals, key, u) -> torch.Tensor:
        k, temperature, monotone = key
        return decode_unshared(self.genre, factuals, k, temperature, u, monotone, self.genre.generator.traced_step)

    def _build(self, key: tuple):
        k, temperature, monotone = key
        genre, step = self.genre, self.genre.generator.step
        t0 = time.perf_counter()
        log.warning("compiling single queries (k=%d, T=%g, monotone=%s) for %s's generator: minutes, unless "
                    "inductor's cache already holds this shape", k, temperature, monotone, genre.spec.name)

        def single(factuals: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            return decode_unshared(genre, factuals, k, temperature, u, monotone, step)

        # One torch.compile per setting and per GenRe: a server swapping champions compiles each new pair afresh,
        # and dynamo's recompile limit never counts one pair's graph against another's (tested with the limit at
        # 1; the copied code object an earlier version made for this was measured to change nothing).
        graph = torch.compile(single, dynamic=False, fullgraph=True)
        try:
            with one_thread(), torch.no_grad():  # a probe factual: the middle of each feature's observed range
                probe = torch.as_tensor((genre.support["low"] + genre.support["high"]) / 2, dtype=torch.float32)[None, :]
                u = torch.rand(k, genre.spec.d, generator=torch.Generator().manual_seed(0))
                got = graph(probe, u)
                want = self._eager(probe, key, u)
        except Exception as exc:  # no C++ compiler, an unsupported operation, ...
            log.warning("could not compile single queries (%s: %s); they stay on the eager path",
                        type(exc).__name__, exc)
            self.events.append({"setting": key, "compiled": False, "reason": f"{type(exc).__name__}: {exc}"})
            return None
        if not torch.equal(got, want):
            log.warning("the compiled single query differs from the eager one on the probe factual; single "
                        "queries stay on the eager path")
            self.events.append({"setting": key, "compiled": False, "reason": "differs from the eager path"})
            return None
        seconds = time.perf_counter() - t0
        log.warning("single queries compiled in %.1f s (k=%d, T=%g, monotone=%s)", seconds, k, temperature, monotone)
        self.events.append({"setting": key, "compiled": True, "seconds": round(seconds, 1)})
        return graph
