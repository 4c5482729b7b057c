"""How GenRe's cost grows with the work: sampling time against batch size, and generator training time per
epoch against training-set size. Each curve gets a least-squares slope in log-log space: a slope near 1
means the time grows linearly (twice the work, twice the time), below 1 that fixed overheads still dominate.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace

import numpy as np

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 10, 100, 1000, 10000)
TRAIN_SIZES = (2000, 8000, 32000)
# A slope inside this band is called linear; the timings carry ±20 % noise on the shared machine.
LINEAR_BAND = (0.85, 1.15)


def loglog_slope(x, y) -> float:
    """Slope of log(y) against log(x), least squares."""
    x, y = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    return float(np.polyfit(x, y, 1)[0])


def describe_growth(sizes, seconds, fit_from: int = 0) -> dict:
    """Slopes over all points and over the points from `fit_from` on (where overheads have faded)."""
    sizes, seconds = list(sizes), list(seconds)
    tail = [i for i, s in enumerate(sizes) if s >= fit_from]
    out = {"slope_all": loglog_slope(sizes, seconds) if len(sizes) > 1 else float("nan")}
    out["fit_from"] = fit_from
    out["slope_tail"] = loglog_slope([sizes[i] for i in tail], [seconds[i] for i in tail]) if len(tail) > 1 else float("nan")
    lo, hi = LINEAR_BAND
    slope = out["slope_tail"]
    if not np.isfinite(slope):
        out["verdict"] = "too few points to fit"
    else:
        out["verdict"] = "linear" if lo <= slope <= hi else "sub-linear" if slope < lo else "super-linear"
    return out


def _time_call(fn, repeats: int) -> float:
    """Median wall seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sampling_scaling(genre, pool: np.ndarray, sizes=BATCH_SIZES, *, k: int = 10, temperature: float = 0.1,
                     select: str = "max_prob", min_seconds: float = 1.0) -> dict:
    """Wall seconds of `genre.generate` on batches of each size, factuals drawn (cycling) from `pool`.

    Small batches are repeated until about `min_seconds` has passed and the median taken, so a 1-factual
    call is not one noisy sample.
    """
    pool = np.asarray(pool, dtype=np.float32)
    genre.generate(pool[:1], k=k, temperature=temperature, select=select)  # warm-up
    rows = []
    for size in sizes:
        batch = pool[np.arange(size) % len(pool)]
        once = _time_call(lambda: genre.generate(batch, k=k, temperature=temperature, select=select), 1)
        repeats = int(min(20, max(1, min_seconds // max(once, 1e-6))))
        seconds = once if repeats == 1 else _time_call(
            lambda: genre.generate(batch, k=k, temperature=temperature, select=select), repeats)
        rows.append({"factuals": int(size), "seconds": seconds, "recourses_per_second": size / seconds,
                     "repeats": repeats})
        log.info("sampling %d factuals (k=%d): %.4f s", size, k, seconds)
    return {"k": k, "temperature": temperature, "select": select, "points": rows,
            "growth": describe_growth([r["factuals"] for r in rows], [r["seconds"] for r in rows], fit_from=100)}


def training_scaling(setup, sizes=TRAIN_SIZES, *, epochs: int = 2, seed: int = 0, progress: bool = False) -> dict:
    """Seconds per generator epoch on random subsets of the training rows (the data set's recipe, `epochs`
    epochs, no early stop). Pair synthesis is timed on its own and taken out of the per-epoch figure."""
    from genre.core.train_generator import make_pairs, recipe, train_generator

    spec = setup.spec
    gen_cfg, train_cfg = recipe(spec.name, spec.d)
    train_cfg = replace(train_cfg, epochs=epochs, patience=epochs + 1, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        if size > len(setup.X_train):
            raise ValueError(f"{spec.name}: asked for {size} training rows, the training set has {len(setup.X_train)}")
        idx = rng.choice(len(setup.X_train), size=size, replace=False)
        X, y = setup.X_train[idx], setup.h_labels[idx]
        t0 = time.perf_counter()
        make_pairs(X, y, setup.classifier.predict_proba(X), spec.mask("immutable"), train_cfg)
        pair_seconds = time.perf_counter() - t0
        model = train_generator(X, y, encoder=setup.encoder, classifier=setup.classifier, config=gen_cfg,
                                train=train_cfg, progress=progress)
        hist = model.history
        ran = len(hist["train_loss"])
        per_epoch = max(hist["train_seconds"] - pair_seconds, 1e-9) / ran
        rows.append({"rows": int(size), "sources": int(hist["n_train_sources"]), "epochs": ran,
                     "pair_seconds": pair_seconds, "total_seconds": hist["train_seconds"],
                     "seconds_per_epoch": per_epoch})
        log.info("training on %d rows (%d sources): %.2f s per epoch", size, hist["n_train_sources"], per_epoch)
    return {"dataset": spec.name, "epochs": epochs, "generator": asdict(gen_cfg),
            "points": rows,
            "growth": describe_growth([r["rows"] for r in rows], [r["seconds_per_epoch"] for r in rows])}


def scaling_genre(setup):
    """The GenRe used for the sampling curve: the `genre` method's generator (trained and cached when missing)."""
    from genre.evaluation.genre_methods import load_or_train

    return load_or_train(setup), "trained"
