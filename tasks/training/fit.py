"""Prefect tasks that train and evaluate a classifier/generator pair on a store snapshot.

Tasks hand each other paths (the snapshot CSV, the run folder), never models or frames: the run folder
holds `classifier.pt`, `encoder.json`, `genre/` (a saved GenRe) and `evaluation.json` + `recourse.npz`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import accuracy_score, roc_auc_score

from genre.core.classifier import Classifier, ClassifierConfig, Oracle, OracleConfig, SecondOpinion, rejected_indices
from genre.core.datasets import DatasetSpec, coerce_frame, read_table, split_xy
from genre.core.encoding import MinMaxEncoder
from genre.core import files
from genre.core.metrics import PlausibilityScorer, already_favourable_warning, cost, recourse_metrics
from tasks.data import store
from tasks.settings import TrainingConfig


def holdout_mask(frame: pd.DataFrame, percent: int) -> np.ndarray:
    """(n,) bool: rows held out, chosen by a hash of the row's content, so a row never changes side
    between store versions and a champion is never scored on rows it was trained on."""
    return (pd.util.hash_pandas_object(frame, index=False).to_numpy() % 100) < percent


def split_snapshot(path: Path, spec: DatasetSpec, percent: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = read_table(path, spec)
    held = holdout_mask(frame, percent)
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def load_run_encoder(run_dir: Path) -> MinMaxEncoder:
    return MinMaxEncoder.from_state_dict(json.loads((run_dir / "encoder.json").read_text()))


def _write_json(path: Path, data) -> None:
    files.write_json(path, data, default=str)


def _progress():
    """Training progress: tqdm's bar on a terminal, else a few summary lines in the run's log."""
    from prefect import get_run_logger

    from genre.core.progress import is_terminal

    return True if is_terminal() else get_run_logger().info


@task(cache_policy=NO_CACHE)
def snapshot_store(store_dir: Path, spec: DatasetSpec) -> store.Snapshot:
    """Freeze the current store as a content-addressed CSV (its data hash names the version)."""
    return store.snapshot(store_dir, spec)


@task(cache_policy=NO_CACHE)
def train_classifier(snapshot: Path, spec: DatasetSpec, run_dir: Path, training: TrainingConfig,
                     anchors: Path | None = None) -> dict:
    """Fit the encoder and h on the snapshot's training rows with their real labels.

    `anchors` (a CSV of `tasks.commitment.anchor_rows`: issued recourses labelled favourable, with a
    `__weight__` column) joins h's training only, weighted; the encoder is fit on the store's rows alone."""
    train, _ = split_snapshot(snapshot, spec, training.holdout_percent)
    X_raw, y = split_xy(train, spec)
    encoder = MinMaxEncoder(spec).fit(X_raw)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "encoder.json", encoder.state_dict())
    config = ClassifierConfig(d=spec.d, epochs=training.classifier_epochs, balanced=True,
                              seed=training.seed)
    X, weight = encoder.transform(X_raw), None
    if anchors is not None:
        extra = pd.read_csv(anchors, dtype=str, keep_default_na=False)
        X_anchor = coerce_frame(extra[list(spec.features)], spec, source=str(anchors))
        X = np.vstack([X, encoder.transform(X_anchor)])
        y = np.concatenate([y, extra[spec.target].astype(int).to_numpy()])
        weight = np.concatenate([np.ones(len(X_raw)), extra["__weight__"].to_numpy(dtype=float)])
    # A bar on a terminal; elsewhere (a log file, a worker) a few lines through the run's logger.
    classifier = Classifier(config).fit(X, y, progress=_progress(), sample_weight=weight)
    classifier.save(run_dir / "classifier.pt")
    _write_json(run_dir / "classifier_history.json", {"config": asdict(config), "loss": classifier.history_,
                                                       "train_rows": len(train)})
    return {"config": asdict(config), "loss": classifier.history_, "train_rows": len(train)}


@task(cache_policy=NO_CACHE)
def train_recourse_generator(snapshot: Path, spec: DatasetSpec, run_dir: Path, training: TrainingConfig) -> dict:
    """Train GenRe's generator against the h saved in `run_dir`, on the same training rows."""
    from prefect import get_run_logger

    from genre.core.train_generator import load_recipe, train_generator

    train, _ = split_snapshot(snapshot, spec, training.holdout_percent)
    X_raw, y = split_xy(train, spec)
    encoder = load_run_encoder(run_dir)
    classifier = Classifier.load(run_dir / "classifier.pt")
    chosen = load_recipe(spec.name, spec.d, rows=len(train))
    model_cfg = replace(chosen.generator, **training.generator_model)
    overrides = {**training.generator_train, "patience": training.generator_patience, "seed": training.seed}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    pairs = overrides.pop("pairs", None)  # PairConfig fields (gamma, lam, target_lof, ...) over the recipe's
    # The config's generator_epochs caps the recipe's epochs (two pairs per `make run`), never raises them.
    if training.generator_epochs is not None and training.generator_epochs < chosen.train.epochs:
        overrides["epochs"] = training.generator_epochs
    train_cfg = replace(chosen.train, **overrides)
    if pairs:
        train_cfg = replace(train_cfg, pairs=replace(train_cfg.pairs, **pairs))
    # Which recipe, and from where: a tuned file, or the default sized to these rows (and any config overrides).
    changed = (sorted(training.generator_model) + sorted(k for k in overrides if k != "seed")
               + [f"pairs.{k}" for k in sorted(pairs or {})])
    source = chosen.source + (f"; the pipeline config sets {changed}" if changed else "")
    # The generator's architecture goes to the MLflow run's params (generator.*), not to the console.
    get_run_logger().info("generator recipe for '%s': %s; training epochs %d, batch %d, patience %s, lr %g, "
                          "lambda %g", spec.name, source, train_cfg.epochs, train_cfg.batch_size, train_cfg.patience,
                          train_cfg.lr, train_cfg.pairs.lam)
    X = encoder.transform(X_raw)
    genre = train_generator(X, y, encoder=encoder, classifier=classifier, config=model_cfg, train=train_cfg,
                            progress=_progress())
    # The robust selection rules' second opinion, fit on the same rows and labels, saved inside the GenRe folder.
    genre = genre.with_second_opinion(SecondOpinion(seed=training.seed).fit(X, y))
    genre.save(run_dir / "genre")
    history = dict(genre.history)
    record = {"config": asdict(model_cfg), "train": asdict(train_cfg), "history": history, "recipe_source": source}
    _write_json(run_dir / "generator_history.json", record)
    return record


@task(cache_policy=NO_CACHE)
def evaluate_classifier(snapshot: Path, spec: DatasetSpec, run_dir: Path, training: TrainingConfig) -> dict:
    """Accuracy and AUC of h on the held-out rows (judged before any generator is trained against it)."""
    _, held = split_snapshot(snapshot, spec, training.holdout_percent)
    X_ho_raw, y_ho = split_xy(held, spec)
    p_ho = Classifier.load(run_dir / "classifier.pt").predict_proba(load_run_encoder(run_dir).transform(X_ho_raw))
    figures = {
        "accuracy": float(accuracy_score(y_ho, p_ho > 0.5)),
        "auc": float(roc_auc_score(y_ho, p_ho)) if len(set(y_ho)) == 2 else float("nan"),
        "holdout_rows": int(len(held)),
    }
    _write_json(run_dir / "evaluation.json", figures)
    return figures


@task(cache_policy=NO_CACHE)
def evaluate_recourse(snapshot: Path, spec: DatasetSpec, run_dir: Path, training: TrainingConfig) -> dict:
    """Cost, validity (oracle and h) and plausibility of GenRe's recourse for held-out rows h rejects."""
    from genre.core.sampler import GenRe

    train, held = split_snapshot(snapshot, spec, training.holdout_percent)
    encoder = load_run_encoder(run_dir)
    classifier = Classifier.load(run_dir / "classifier.pt")
    genre = GenRe.load(run_dir / "genre")
    X_tr_raw, y_tr = split_xy(train, spec)
    X_ho_raw, y_ho = split_xy(held, spec)
    X_tr, X_ho = encoder.transform(X_tr_raw), encoder.transform(X_ho_raw)
    p_ho = classifier.predict_proba(X_ho)
    # The production judge, built as the paper's authors build theirs (class-balanced calibrated forest) on the
    # whole snapshot's real labels; LOF on the snapshot rows it calls favourable.
    X_all = np.vstack([X_tr, X_ho])
    oracle = Oracle(OracleConfig(n_estimators=training.oracle_trees, seed=training.seed)).fit(
        X_all, np.concatenate([y_tr, y_ho]))
    plausibility = PlausibilityScorer().fit(X_all[oracle.favourable(X_all)])
    rejected = rejected_indices(p_ho)
    rng = np.random.default_rng(training.seed)
    picked = np.sort(rng.choice(rejected, size=min(training.n_factuals, len(rejected)), replace=False))
    factuals = X_ho[picked]
    recourse = genre.generate(factuals, k=training.k, temperature=training.temperature, select=training.select,
                              seed=training.seed)
    if len(factuals):
        figures = recourse_metrics(factuals, recourse, encoder=encoder, oracle=oracle, classifier=classifier,
                                   plausibility=plausibility)
    else:
        figures = {"n": 0, "cost": float("nan"), "validity": 0.0, "validity_classifier": 0.0, "plausibility": 0.0}
    # Rejected by h but already accepted by the judge: when that is most of them, validity tells nothing.
    already = float(np.mean(oracle.favourable(factuals))) if len(factuals) else 0.0
    figures["factuals_already_favourable"] = already
    figures["validity_warning"] = already_favourable_warning(already, len(factuals))
    np.savez(run_dir / "recourse.npz", factuals=factuals, recourse=recourse, holdout_index=picked,
             cost=cost(factuals, recourse), h=classifier.predict_proba(recourse) if len(recourse) else np.zeros(0),
             oracle=oracle.predict_proba(recourse) if len(recourse) else np.zeros(0))
    figures |= json.loads((run_dir / "evaluation.json").read_text())
    _write_json(run_dir / "evaluation.json", figures)
    return figures
