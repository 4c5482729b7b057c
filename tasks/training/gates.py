"""Promotion gates: every figure against its threshold from the config, with a verdict each."""
from __future__ import annotations

import math

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import roc_auc_score

from genre.core.datasets import DatasetSpec, split_xy
from tasks.registry.client import CLASSIFIER_MODEL, champion_versions, load_classifier_version, version_tags
from tasks.settings import GateConfig, PipelineSettings
from tasks.training.fit import split_snapshot


def judge(figures: dict, champion: dict | None, gates: GateConfig) -> list[dict]:
    """One row per gate: name, figure, threshold, passed (NaN figures never pass). Without recourse
    figures (h failed first, so no generator was trained) only the classifier's gates are judged."""

    def row(name: str, figure: float, threshold: float, why: str) -> dict:
        ok = not math.isnan(figure) and figure >= threshold
        return {"name": name, "figure": round(float(figure), 4), "threshold": round(float(threshold), 4),
                "passed": bool(ok), "why": why}

    out = [row("auc_floor", figures["auc"], gates.auc_floor, "h's held-out AUC above chance by a floor")]
    if champion is not None:
        out.append(row("auc_vs_champion", figures["auc"], champion["auc"] - gates.auc_margin,
                       f"AUC within {gates.auc_margin} of champion v{champion['classifier_version']} on the same rows"))
    if "validity" not in figures:
        return out
    warning = figures.get("validity_warning")
    out += [
        row("recourse_validity", figures["validity"], gates.validity_floor, "share of recourses the oracle accepts"
            + (f" ({figures['factuals_already_favourable']:.1%} of the factuals already were: uninformative)"
               if warning else "")) | ({"warning": warning} if warning else {}),
        row("recourse_plausibility", figures["plausibility"], gates.plausibility_floor, "share of LOF inliers"),
        row("generator_valid_under_h", figures["validity_classifier"], gates.validity_h_floor,
            "share of recourses the paired h accepts"),
    ]
    return out


@task(cache_policy=NO_CACHE)
def champion_figures(snapshot, spec: DatasetSpec, settings: PipelineSettings) -> dict | None:
    """The champion classifier's AUC on this run's held-out rows (None before the first promotion)."""
    classifier_version, generator_version = champion_versions(settings)
    if classifier_version is None:
        return None
    served = version_tags(CLASSIFIER_MODEL, classifier_version, settings).get("dataset")
    if served != spec.name:
        raise ValueError(f"this registry's champion serves data set '{served}', not '{spec.name}': "
                         f"use a separate GENRE_HOME per data set")
    classifier, encoder = load_classifier_version(classifier_version, settings)
    _, held = split_snapshot(snapshot, spec, settings.training.holdout_percent)
    X_raw, y = split_xy(held, spec)
    proba = classifier.predict_proba(encoder.transform(X_raw))
    auc = float(roc_auc_score(y, proba)) if len(np.unique(y)) == 2 else float("nan")
    return {"classifier_version": classifier_version, "generator_version": generator_version, "auc": auc}


@task(cache_policy=NO_CACHE)
def check_gates(figures: dict, champion: dict | None, gates: GateConfig) -> list[dict]:
    """Judge the challenger pair against the config's thresholds."""
    return judge(figures, champion, gates)
