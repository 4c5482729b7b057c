"""DiCE (`dice-ml` 0.12) as recourse methods `dice-random` and `dice-genetic`, for side-by-side benchmarks.

DiCE's model-agnostic explainers (random, genetic) run only on its "sklearn" backend, which calls
`predict_proba` / `predict` on a table in the applicant's own units. `RawUnitsModel` gives h that face:
it encodes the table with the protocol's encoder and returns h's probabilities, so DiCE queries the very
same h as every other method. DiCE's PyTorch backend offers only its gradient method.

One counterfactual per factual; only mutable features may vary; permitted ranges are the training data's
(min and max of each continuous feature, all categories of each categorical one). DiCE has no batch mode,
so factuals are explained one by one until a time cap: `DiceRecourse.run` says which ones it finished.

`dice_ml` is imported inside functions: the library imports without the optional `bench` extra.
"""
from __future__ import annotations

import contextlib
import io
import random
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genre.evaluation.methods import register_method

DEFAULT_TIME_CAP_S = 120.0
DICE_METHODS = ("random", "genetic")
# DiCE's own defaults for both explainers, written out so a reader sees what was run.
DICE_KWARGS = {
    "random": {"posthoc_sparsity_param": 0.1, "posthoc_sparsity_algorithm": "linear"},
    "genetic": {"posthoc_sparsity_param": 0.1, "posthoc_sparsity_algorithm": "binary"},
}


class RawUnitsModel:
    """h as a scikit-learn-like binary classifier over a table in the applicant's units."""

    def __init__(self, encoder, classifier):
        self.encoder = encoder
        self.classifier = classifier
        self.features = list(encoder.spec.features)
        self.classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.classifier.predict_proba(self.encoder.transform(X[self.features]))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)


@dataclass
class PeerRun:
    """What a capped, one-by-one run produced. Rows not found or not finished hold the factual itself."""

    recourses: np.ndarray  # (n, d) encoded
    finished: np.ndarray  # (n,) bool: the method reached this factual before the time cap
    found: np.ndarray  # (n,) bool: the method returned a counterfactual for it
    errors: np.ndarray  # (n,) bool: DiCE crashed on it (see `DiceFailure`); counted as not found
    seconds: np.ndarray  # (n,) wall seconds per factual; NaN where not finished
    time_cap_s: float
    setup_seconds: float  # building DiCE's data, model and explainer objects (once per run)

    @property
    def n_finished(self) -> int:
        return int(self.finished.sum())

    @property
    def n_found(self) -> int:
        return int(self.found.sum())

    @property
    def n_errors(self) -> int:
        return int(self.errors.sum())


class DiceFailure(RuntimeError):
    """DiCE itself crashed on one factual (a known defect of its genetic search, see `DiceRecourse.explain`)."""


def permitted_ranges(setup) -> dict[str, list]:
    """Feature -> [min, max] of the training data (continuous) or its categories (categorical)."""
    spec = setup.spec
    raw = setup.encoder.inverse_transform(setup.X_train)
    out: dict[str, list] = {}
    for f in spec.features:
        if f in spec.categorical:
            out[f] = list(spec.categorical[f])
        else:
            out[f] = [raw[f].min().item(), raw[f].max().item()]
    return out


class DiceRecourse:
    """DiCE `random` or `genetic` against the protocol's h, one counterfactual per factual."""

    def __init__(self, setup, method: str = "random", *, seed: int = 0):
        if method not in DICE_METHODS:
            raise ValueError(f"DiCE method must be one of {DICE_METHODS}, got '{method}'")
        dice_ml = _import_dice()
        start = time.perf_counter()
        self.setup, self.method, self.seed = setup, method, seed
        spec = setup.spec
        self.features = list(spec.features)
        self.mutable = [f for f in spec.features if f not in spec.immutable]
        self.ranges = {f: r for f, r in permitted_ranges(setup).items() if f in self.mutable}
        train = setup.encoder.inverse_transform(setup.X_train)
        train[spec.target] = np.asarray(setup.y_train).astype(np.int64)
        continuous = [f for f in spec.features if f not in spec.categorical]
        data = dice_ml.Data(dataframe=train, continuous_features=continuous, outcome_name=spec.target)
        model = dice_ml.Model(model=RawUnitsModel(setup.encoder, setup.classifier), backend="sklearn")
        self.explainer = dice_ml.Dice(data, model, method=method)
        from raiutils.exceptions import UserConfigValidationException

        self._nothing_found = UserConfigValidationException
        self.setup_seconds = time.perf_counter() - start

    def explain(self, factual: np.ndarray, index: int = 0) -> np.ndarray | None:
        """One encoded factual (d,) -> its encoded counterfactual (d,), or None when DiCE finds none.
        Raises `DiceFailure` where DiCE itself crashes on the factual."""
        query = self.setup.encoder.inverse_transform(np.asarray(factual, dtype=np.float32)[None, :])
        # DiCE draws from the global generators (genetic takes no seed): seed them per factual, so a run
        # is reproducible and a factual's answer does not depend on where it sits in the batch.
        random.seed(self.seed + index)
        np.random.seed(self.seed + index)
        kwargs = dict(DICE_KWARGS[self.method])
        if self.method == "random":
            kwargs["random_seed"] = self.seed + index
        # DiCE prints a progress bar per call and a line when it finds nothing: keep the terminal readable.
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                result = self.explainer.generate_counterfactuals(
                    query, total_CFs=1, desired_class=1, features_to_vary=self.mutable,
                    permitted_range=self.ranges, **kwargs,
                )
        except self._nothing_found as exc:
            # DiCE raises, rather than returns empty, when no query point got a counterfactual.
            if "No counterfactuals found" not in str(exc):
                raise
            return None
        except ValueError as exc:
            # DiCE 0.12's genetic search de-duplicates its population each generation; with one
            # counterfactual asked and few mutable features it can collapse to a single member, and then
            # drawing parents from the "top half" fails. That is DiCE failing on this factual.
            if "empty range for randrange" not in str(exc):
                raise
            raise DiceFailure(str(exc)) from exc
        example = result.cf_examples_list[0]
        cfs = example.final_cfs_df_sparse if example.final_cfs_df_sparse is not None else example.final_cfs_df
        if cfs is None or len(cfs) == 0:
            return None
        return self.setup.encoder.transform(cfs[self.features].iloc[:1].reset_index(drop=True))[0]

    def run(self, factuals: np.ndarray, time_cap_s: float = DEFAULT_TIME_CAP_S, *, progress: bool = False) -> PeerRun:
        """Explain factuals in order until `time_cap_s` has passed; a started factual is let finish."""
        factuals = np.asarray(factuals, dtype=np.float32)
        n = len(factuals)
        recourses = factuals.copy()
        finished, found, errors = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        seconds = np.full(n, np.nan)
        start = time.perf_counter()
        bar = tqdm(range(n), desc=f"dice-{self.method} {self.setup.spec.name}", disable=not progress, leave=False)
        for i in bar:
            if time.perf_counter() - start >= time_cap_s:
                break
            t0 = time.perf_counter()
            try:
                cf = self.explain(factuals[i], i)
            except DiceFailure:
                cf, errors[i] = None, True
            seconds[i] = time.perf_counter() - t0
            finished[i] = True
            if cf is not None:
                recourses[i], found[i] = cf, True
        bar.close()
        return PeerRun(recourses, finished, found, errors, seconds, float(time_cap_s), self.setup_seconds)


def _import_dice():
    try:
        import dice_ml
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "DiCE is not installed: `make bench-deps` (or `pip install -e .[bench]`) installs dice-ml==0.12"
        ) from exc
    return dice_ml


def dice_recourse(factuals: np.ndarray, setup, method: str, time_cap_s: float = DEFAULT_TIME_CAP_S) -> np.ndarray:
    """Registry form: (n, d) -> (n, d); factuals DiCE did not finish or found nothing for come back unchanged."""
    return DiceRecourse(setup, method).run(factuals, time_cap_s).recourses


@register_method("dice-random")
def dice_random(factuals: np.ndarray, setup) -> np.ndarray:
    return dice_recourse(factuals, setup, "random")


@register_method("dice-genetic")
def dice_genetic(factuals: np.ndarray, setup) -> np.ndarray:
    return dice_recourse(factuals, setup, "genetic")
