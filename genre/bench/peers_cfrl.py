"""CFRL (alibi's `CounterfactualRLTabular`, pytorch backend) as a peer of `genre bench-peers`.

alibi 0.9.6 needs numpy < 2, so it lives in a venv of its own (`.venv-cfrl`, made by `make bench-deps` from
requirements-cfrl.txt) and runs in a subprocess, `bench/cfrl_worker.py`: this module writes the job as an
.npz (the training rows and factuals in codes, h's min-max encoding and weights, the features' roles) and
reads the recourses and timings back. CFRL gets the same h, factuals and constraints as GenRe's `genre` rule
(immutable features; no monotone ranges, as `genre` has none) and is judged by the same judge here.

The trained explainer is kept under the protocol set-up's cache folder (like GenRe's generator), with the
seconds its training took, which the bench reports next to GenRe's.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "bench" / "cfrl_worker.py"
DEFAULT_PYTHON = REPO / ".venv-cfrl" / "bin" / "python"
TRAIN_STEPS = 10_000  # the measurement; alibi's example trains 100,000
AE_EPOCHS = 50  # alibi's example


class CfrlUnavailable(RuntimeError):
    """The CFRL venv is missing (run `make bench-deps`)."""


@dataclass
class CfrlRun:
    recourses: np.ndarray  # (n, d) encoded
    batch_seconds: float
    latency_seconds: np.ndarray
    train_seconds: float  # autoencoder + DDPG, as measured when it was trained
    ae_seconds: float
    fit_seconds: float
    cached: bool
    versions: dict
    answer_threads: int = 1  # the thread count the reported times were taken at (the fastest)
    batch_seconds_by_threads: dict | None = None


def codes(encoded: np.ndarray, encoder) -> np.ndarray:
    """Encoded rows -> codes (a categorical's category index, other features in their units; whole numbers
    where the spec says integer)."""
    raw = np.asarray(encoded, dtype=np.float64) * encoder.range_ + encoder.min_
    whole = encoder.spec.mask("categorical") | encoder.spec.mask("integer")
    raw[:, whole] = np.rint(raw[:, whole])
    return raw


def job_arrays(setup, factuals: np.ndarray, *, train_steps: int = TRAIN_STEPS, ae_epochs: int = AE_EPOCHS,
               threads: int = 1, answer_threads=(1,), latency_queries: int = 20) -> dict:
    """The job file's arrays for `bench/cfrl_worker.py`."""
    spec, enc = setup.spec, setup.encoder
    arrays = {"X_train": codes(setup.X_train, enc), "factuals": codes(factuals, enc), "lo": enc.min_, "span": enc.range_}
    linears = [m for m in setup.classifier.module.net if hasattr(m, "weight")]
    for i, layer in enumerate(linears):
        arrays[f"h_w{i}"] = layer.weight.detach().numpy().astype(np.float32)
        arrays[f"h_b{i}"] = layer.bias.detach().numpy().astype(np.float32)
    meta = {"feature_names": list(spec.features),
            "category_map": {str(spec.features.index(f)): list(c) for f, c in spec.categorical.items()},
            "immutable": list(spec.immutable), "ranges": {}, "integer": list(spec.integer),
            "train_steps": int(train_steps), "ae_epochs": int(ae_epochs), "seed": int(setup.seed), "threads": int(threads),
            "answer_threads": sorted({int(t) for t in answer_threads}), "latency_queries": int(latency_queries)}
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def run_cfrl(setup, factuals: np.ndarray, *, python: Path = DEFAULT_PYTHON, train_steps: int = TRAIN_STEPS,
             ae_epochs: int = AE_EPOCHS, threads: int = 1, answer_threads=(1,), latency_queries: int = 20,
             timeout_s: float = 3600.0) -> CfrlRun:
    """Train (or load) CFRL for the set-up's h and answer the factuals, in the CFRL venv. `threads`: torch
    threads for training; answering is timed at each of `answer_threads` and the fastest is reported."""
    if not Path(python).exists():
        raise CfrlUnavailable(f"CFRL needs its own venv: {python} is missing (run `make bench-deps`)")
    cache = Path(setup.cache_dir) / "cfrl"
    with tempfile.TemporaryDirectory(prefix="genre-cfrl-") as tmp:
        job, answer = Path(tmp) / "job.npz", Path(tmp) / "answer.npz"
        np.savez(job, **job_arrays(setup, factuals, train_steps=train_steps, ae_epochs=ae_epochs, threads=threads,
                                   answer_threads=answer_threads, latency_queries=latency_queries))
        start = time.perf_counter()
        # stderr passes through: the training's progress bar (alibi's tqdm) shows, and so does any traceback.
        done = subprocess.run([str(python), str(WORKER), str(job), str(answer), "--cache", str(cache)],
                              stdout=subprocess.DEVNULL, timeout=timeout_s)
        if done.returncode != 0 or not answer.exists():
            raise RuntimeError(f"CFRL worker failed after {time.perf_counter() - start:.0f} s (exit "
                               f"{done.returncode}); its error is printed above")
        out = dict(np.load(answer))
    enc = setup.encoder
    recourses = ((out["recourses"] - enc.min_) / enc.range_).astype(np.float32)
    ae, fit = float(out["ae_seconds"]), float(out["fit_seconds"])
    return CfrlRun(recourses=recourses, batch_seconds=float(out["batch_seconds"]),
                   latency_seconds=np.asarray(out["latency_seconds"], dtype=np.float64), train_seconds=ae + fit,
                   ae_seconds=ae, fit_seconds=fit, cached=bool(int(out["loaded"])),
                   versions=json.loads(str(out["versions"])), answer_threads=int(out["answer_threads"]),
                   batch_seconds_by_threads=json.loads(str(out["batch_seconds_by_threads"])))
