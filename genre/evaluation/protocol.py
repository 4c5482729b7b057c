"""The paper's evaluation protocol for one data set, trained once and cached under `GENRE_HOME`.

Built as the authors' released code builds it (`scripts/train_rf.py`, `scripts/train_ann.py` and
`notebooks/genre_sampler.ipynb` in prateekgargX/genre):
- a min-max encoder fit on the train features;
- the judge: an isotonic-calibrated random forest fit on train + test with class-balanced sample weights
  (`genre.core.classifier.OracleConfig`); a recourse is valid when its P(y = 1 | x) > 0.5;
- labels for h drawn from the judge, y ~ Bernoulli(P(y = 1 | x)), so that the judge is the true P(y | x);
- h, the 10-10-10 MLP, trained on the encoded train rows with those labels and class-balanced weights
  (the authors' `ann_rf_tt_mm_cali_10_10_10`: batch 2048, 100 epochs, Adam lr 1e-3, the file's row order);
- plausibility: LOF (5 neighbours, novelty) fit on the train + test rows the judge calls favourable;
- factuals: test rows h rejects (h(x) <= 0.5).
Everything is keyed by data set, seed, every judge and h setting and the sha256 of the data files, so a
changed file or judge never reuses stale models.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from genre.core.classifier import (Classifier, ClassifierConfig, Oracle, OracleConfig, SecondOpinion, oracle_labels,
                                  rejected_indices)
from genre.core.datasets import DatasetSpec, file_sha256, get_spec, read_table, resolve_file, split_xy
from genre.core.encoding import MinMaxEncoder
from genre.core import files
from genre.core.metrics import PlausibilityScorer
from genre.core.settings import Settings

log = logging.getLogger(__name__)

# Bump when the judge's construction changes in a way its config does not show (e.g. which rows LOF is fit
# on): every cached protocol model fit under an older judge is then refit, never reused.
JUDGE_VERSION = "authors-2"
# Robustness to model change: how many classifiers are retrained like h on bootstrap resamples of its rows.
RETRAINED = 5


@dataclass
class ProtocolSetup:
    """Everything a recourse method and the metrics need for one data set (features encoded in [0, 1])."""

    spec: DatasetSpec
    encoder: MinMaxEncoder
    X_train: np.ndarray  # (n_train, d) float32, encoded
    y_train: np.ndarray  # (n_train,) real labels
    X_test: np.ndarray  # (n_test, d) float32, encoded
    y_test: np.ndarray  # (n_test,) real labels
    oracle: Oracle
    classifier: Classifier
    h_labels: np.ndarray  # (n_train,) the oracle-drawn labels h was trained on
    seed: int
    cache_dir: Path
    h_config: ClassifierConfig | None = None  # h's recipe: the retrained classifiers follow it
    _plausibility: PlausibilityScorer | None = field(default=None, repr=False)
    _second_opinion: SecondOpinion | None = field(default=None, repr=False)
    _guard: PlausibilityScorer | None = field(default=None, repr=False)
    _retrained: list[Classifier] | None = field(default=None, repr=False)
    # GenRes trained or loaded for this set-up, by cache folder (`genre_methods.load_or_train` fills it).
    generators: dict = field(default_factory=dict, repr=False)

    @property
    def d(self) -> int:
        return self.spec.d

    def factual_indices(self, n: int | None, seed: int = 0) -> np.ndarray:
        """Indices of n random test rows that h rejects (h(x) <= 0.5), in a seed-fixed order; n=None: all of
        them (the "test negatives"), in file order."""
        rejected = rejected_indices(self.classifier.predict_proba(self.X_test))
        if n is None:
            return rejected
        if len(rejected) < n:
            raise ValueError(f"{self.spec.name}: only {len(rejected)} test rows have h(x) <= 0.5, asked for {n}")
        return np.random.default_rng(seed).choice(rejected, size=n, replace=False)

    def pick_factuals(self, n: int | None, seed: int = 0) -> np.ndarray:
        """(n, d) float32: n random encoded test rows with h(x) <= 0.5 (n=None: every one)."""
        return self.X_test[self.factual_indices(n, seed)]

    @property
    def plausibility(self) -> PlausibilityScorer:
        """LOF fit on the train + test rows the judge calls favourable (the authors' notebook); cached."""
        if self._plausibility is None:
            rows = np.vstack([self.X_train, self.X_test])
            self._plausibility = _load_or_fit(self.cache_dir / "plausibility.joblib", lambda: PlausibilityScorer().fit(
                rows[self.oracle.favourable(rows)]))
        return self._plausibility

    @property
    def second_opinion(self) -> SecondOpinion:
        """Gradient-boosted trees on h's training rows and labels (GenRe's robust rules); cached beside h."""
        if self._second_opinion is None:
            self._second_opinion = _load_or_fit(self.cache_dir / "second_opinion.joblib",
                                                lambda: SecondOpinion(seed=self.seed).fit(self.X_train, self.h_labels))
        return self._second_opinion

    @property
    def guard(self) -> PlausibilityScorer:
        """GenRe's own manifold check for `sparsify`: LOF on h's favourable training rows (no judge, no test)."""
        if self._guard is None:
            self._guard = _load_or_fit(self.cache_dir / "guard.joblib",
                                       lambda: PlausibilityScorer().fit(self.X_train[self.h_labels == 1]))
        return self._guard

    def retrained_classifiers(self, count: int = RETRAINED) -> list[Classifier]:
        """`count` classifiers trained the way h is (same recipe and labels) on bootstrap resamples of h's
        training rows, each with its own initialisation seed; cached beside h (`retrained/h-<i>.pt`)."""
        if self._retrained is None or len(self._retrained) < count:
            config = self.h_config or classifier_config(self.spec, self.seed)
            out = []
            for i in range(count):
                path = self.cache_dir / "retrained" / f"h-{i}.pt"
                if path.exists():
                    out.append(Classifier.load(path))
                    continue
                log.info("%s: retraining h on bootstrap resample %d of %d", self.spec.name, i + 1, count)
                rows = np.random.default_rng([self.seed, i]).integers(0, len(self.X_train), len(self.X_train))
                clf = Classifier(replace(config, seed=config.seed * 1000 + 1 + i)).fit(self.X_train[rows],
                                                                                   self.h_labels[rows])
                clf.save(path)
                out.append(clf)
            self._retrained = out
        return self._retrained[:count]

    def validity_retrained(self, recourses: np.ndarray, count: int = RETRAINED) -> float:
        """Robustness to model change: the share of recourses a retrained h accepts (P > 0.5), averaged over
        the `count` bootstrap-retrained classifiers (NaN for no recourse)."""
        if len(recourses) == 0:
            return float("nan")
        X = np.asarray(recourses, dtype=np.float32)
        return float(np.mean([np.mean(c.predict_proba(X) > 0.5) for c in self.retrained_classifiers(count)]))


def classifier_config(spec: DatasetSpec, seed: int = 0, **overrides) -> ClassifierConfig:
    """The authors' recipe for h (`scripts/train_ann.py` defaults with --calibrated, hidden 10 10 10);
    `overrides` (e.g. epochs=5) are for quick tests only."""
    cfg = ClassifierConfig(d=spec.d, hidden=(10, 10, 10), lr=1e-3, epochs=100, batch_size=2048, balanced=True,
                           shuffle=False, seed=seed)
    return replace(cfg, **overrides)


def oracle_config(seed: int = 0) -> OracleConfig:
    """The authors' judge (`scripts/train_rf.py`): scikit-learn's default forest and calibration, balanced."""
    return OracleConfig(seed=seed)


def load_protocol(
    spec: DatasetSpec | str | Path,
    seed: int = 0,
    *,
    settings: Settings | None = None,
    progress: bool = True,
    classifier_overrides: dict | None = None,
) -> ProtocolSetup:
    """Train (first call) or load (later calls) the paper's protocol set-up for a data set."""
    spec = spec if isinstance(spec, DatasetSpec) else get_spec(spec)
    settings = settings or Settings.from_env()
    paths = {split: resolve_file(spec, split, settings.data_dir) for split in ("train", "test")}
    train, test = read_table(paths["train"], spec), read_table(paths["test"], spec)
    X_train_raw, y_train = split_xy(train, spec)
    X_test_raw, y_test = split_xy(test, spec)
    h_config = classifier_config(spec, seed, **(classifier_overrides or {}))
    judge = oracle_config(seed)
    cache_dir = settings.model_dir / "protocol" / f"{spec.name}-seed{seed}-{_cache_key(spec, paths, h_config, judge)}"

    encoder = _load_or_fit_encoder(cache_dir / "encoder.json", spec, X_train_raw)
    X_train, X_test = encoder.transform(X_train_raw), encoder.transform(X_test_raw)
    def fit_oracle() -> Oracle:
        log.info("%s: fitting the oracle on train + test (%d rows)", spec.name, len(X_train) + len(X_test))
        return Oracle(judge).fit(np.vstack([X_train, X_test]), np.concatenate([y_train, y_test]))

    oracle = _load_or_fit(cache_dir / "oracle.joblib", fit_oracle)
    # Drawn again on every load (cheap, seeded), so the labels h saw need no file of their own.
    h_labels = oracle_labels(oracle, X_train, seed)
    clf_path = cache_dir / "classifier.pt"
    if clf_path.exists():
        classifier = Classifier.load(clf_path)
    else:
        log.info("%s: training h (%d epochs)", spec.name, h_config.epochs)
        classifier = Classifier(h_config).fit(X_train, h_labels, progress=progress)
        classifier.save(clf_path)
    return ProtocolSetup(
        spec=spec, encoder=encoder, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
        oracle=oracle, classifier=classifier, h_labels=h_labels, seed=seed, cache_dir=cache_dir, h_config=h_config,
    )


def _cache_key(spec: DatasetSpec, paths: dict[str, Path], h_config: ClassifierConfig, judge: OracleConfig) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(spec.to_dict() | {"train_file": "", "test_file": ""}, sort_keys=True).encode())
    digest.update(json.dumps(asdict(h_config), sort_keys=True).encode())
    digest.update(json.dumps({"judge": asdict(judge), "version": JUDGE_VERSION}, sort_keys=True).encode())
    for split in ("train", "test"):
        digest.update(file_sha256(paths[split]).encode())
    return digest.hexdigest()[:12]


def _load_or_fit_encoder(path: Path, spec: DatasetSpec, X_train_raw: pd.DataFrame) -> MinMaxEncoder:
    if path.exists():
        return MinMaxEncoder.from_state_dict(json.loads(path.read_text()))
    encoder = MinMaxEncoder(spec).fit(X_train_raw)
    files.write_json(path, encoder.state_dict())
    return encoder


def _load_or_fit(path: Path, fit):
    """The object cached at `path`, or `fit()`'s result, cached there first (written atomically).

    A pickle names the module of each class in it: one written before a class moved (e.g. `genre.classifier`
    became `genre.core.classifier`) no longer loads, and is refit (every fit here is seeded, so the refit
    object is the one that was cached) and written again."""
    if path.exists():
        try:
            return joblib.load(path)
        except (ModuleNotFoundError, AttributeError) as exc:
            log.warning("%s was written by an older layout of the code (%s): refitting it", path, exc)
    obj = fit()
    _dump_atomic(obj, path)
    return obj


def _dump_atomic(obj: object, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        joblib.dump(obj, tmp)
