"""GenRe's speed at the machine's limit (issue 14): recourses/s against threads and batch size, single-query
latency, and the plot. `genre bench` calls these; every figure comes with the load average it was taken at,
since the machine is shared and absolute times move with the other users' work.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

BATCH_SIZES = (1, 10, 100, 1000, 10000)
THREADS = (1, 2)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _median_seconds(fn, min_seconds: float, max_repeats: int = 20) -> tuple[float, int]:
    """Median wall seconds of fn(), repeated until about `min_seconds` have passed (at least 3 times)."""
    times = []
    while len(times) < 3 or (sum(times) < min_seconds and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def throughput_grid(genre, pool: np.ndarray, *, k: int, temperature: float, sizes=BATCH_SIZES, threads=THREADS,
                    seed: int = 0, min_seconds: float = 1.0) -> list[dict]:
    """Recourses/s of `genre.generate` (max_prob) for each batch size and thread count, measured one after the
    other in this process on the same factuals (drawn cycling from `pool`)."""
    pool = np.asarray(pool, dtype=np.float32)
    genre.generate(pool[:1], k=k, temperature=temperature, seed=seed)  # traces and buffers made before the clock
    points = []
    for size in sizes:
        batch = pool[np.arange(size) % len(pool)]
        for n_threads in threads:
            seconds, repeats = _median_seconds(
                lambda: genre.generate(batch, k=k, temperature=temperature, seed=seed, threads=n_threads), min_seconds)
            points.append({"factuals": int(size), "threads": int(n_threads), "seconds": seconds,
                           "recourses_per_second": size / seconds, "repeats": repeats, "load_average": load_average()})
    return points


def single_query(genre, pool: np.ndarray, *, k: int, temperature: float, queries: int = 100, seed: int = 0) -> dict:
    """Latency of one factual per call (in process), p50 and p90 over `queries` different factuals."""
    seconds, _ = _one_at_a_time(genre, _rows(pool, queries), k=k, temperature=temperature, seed=seed)
    return _latency(seconds) | {"queries": queries, "load_average": load_average()}


def single_query_compiled(genre, pool: np.ndarray, *, k: int, temperature: float, queries: int = 100,
                          seed: int = 0, monotone: bool = False, rounds: int = 2) -> dict:
    """The eager and the compiled single query (`GenRe.compile_single_queries`) side by side: `rounds` times, a
    block of `queries` factuals one call each on the eager path, then the same block compiled (blocks, not
    alternate calls: interleaving the two paths call by call slowed both, by up to 2x on heloc, as their
    working sets evicted each other; a server runs one of them). Also how many answers are identical."""
    twin = genre._with()  # the same models with a compiled decoder of its own
    t0 = time.perf_counter()
    compiled = twin.compile_single_queries(k, temperature, monotone)
    compile_seconds = time.perf_counter() - t0
    rows = _rows(pool, queries)
    setting = dict(k=k, temperature=temperature, seed=seed, monotone=monotone)
    eager_s, compiled_s, same = [], [], queries
    for _ in range(rounds):
        (e, want), (c, got) = _one_at_a_time(genre, rows, **setting), _one_at_a_time(twin, rows, **setting)
        eager_s += e
        compiled_s += c
        same = min(same, sum(a.tobytes() == b.tobytes() for a, b in zip(want, got)))  # the worst round's
    return {"queries": queries, "rounds": rounds, "compiled": compiled, "compile_seconds": round(compile_seconds, 1),
            "identical_answers": same, "eager": _latency(eager_s), "compiled_graph": _latency(compiled_s),
            "speedup": round(float(np.median(eager_s) / np.median(compiled_s)), 2), "load_average": load_average()}


def _rows(pool: np.ndarray, queries: int) -> list[np.ndarray]:
    """`queries` single-factual (1, d) batches, cycling through the pool."""
    pool = np.asarray(pool, dtype=np.float32)
    return [pool[i % len(pool)][None, :] for i in range(queries)]


def _one_at_a_time(genre, rows: list[np.ndarray], **setting) -> tuple[list[float], list[np.ndarray]]:
    """Each row answered by its own `generate` call after one warm-up call: wall seconds and answers."""
    genre.generate(rows[0], **setting)
    seconds, answers = [], []
    for row in rows:
        t0 = time.perf_counter()
        answers.append(genre.generate(row, **setting))
        seconds.append(time.perf_counter() - t0)
    return seconds, answers


def _latency(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}


def plot_grid(rows: list[dict], path: Path) -> Path:
    """Recourses/s against batch size, one line per thread count, one panel per data set (log-log)."""
    from genre.bench.plots import _save, plt  # the Agg backend is chosen there

    fig, axes = plt.subplots(1, len(rows), figsize=(5.2 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        points = row["grid"]
        for n_threads in sorted({p["threads"] for p in points}):
            mine = [p for p in points if p["threads"] == n_threads]
            ax.loglog([p["factuals"] for p in mine], [p["recourses_per_second"] for p in mine], "o-",
                      label=f"{n_threads} thread{'s' if n_threads > 1 else ''}")
        load = points[-1]["load_average"][0] if points else float("nan")
        ax.set_title(f"{row['dataset']} (k = {row['k']}, load avg {load:.1f})")
        ax.set_xlabel("factuals in the batch")
        ax.set_ylabel("recourses per second (max_prob)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("GenRe's recourses/s against batch size and threads")
    return _save(fig, path)
