"""Gates judge each figure against the config; NaN never passes; the champion comparison needs a champion."""
from __future__ import annotations

import math

from tasks.training.gates import judge
from tasks.settings import GateConfig

GOOD = {"auc": 0.82, "validity": 0.97, "plausibility": 0.9, "validity_classifier": 1.0}


def _verdicts(rows):
    return {r["name"]: r["passed"] for r in rows}


def test_first_pair_has_no_champion_gate_and_passes_when_good():
    verdicts = _verdicts(judge(GOOD, None, GateConfig()))
    assert "auc_vs_champion" not in verdicts and all(verdicts.values())


def test_auc_worse_than_champion_by_more_than_the_margin_fails():
    champion = {"classifier_version": "3", "auc": 0.86}
    assert not _verdicts(judge(GOOD, champion, GateConfig(auc_margin=0.02)))["auc_vs_champion"]
    assert _verdicts(judge(GOOD, champion, GateConfig(auc_margin=0.05)))["auc_vs_champion"]


def test_each_floor_fails_on_its_own():
    for key, gate in (("validity", "recourse_validity"), ("plausibility", "recourse_plausibility"),
                      ("validity_classifier", "generator_valid_under_h"), ("auc", "auc_floor")):
        verdicts = _verdicts(judge(GOOD | {key: 0.1}, None, GateConfig()))
        assert not verdicts[gate] and sum(not v for v in verdicts.values()) == 1


def test_nan_figure_never_passes():
    rows = judge(GOOD | {"auc": float("nan")}, None, GateConfig())
    assert not _verdicts(rows)["auc_floor"] and math.isnan(rows[0]["figure"])


def test_the_gate_report_says_when_validity_is_uninformative():
    # Issue 16: with most factuals already favourable to the judge, validity is noted as uninformative.
    from genre.core.metrics import already_favourable_warning
    from tasks.training.gates import judge
    from tasks.settings import GateConfig

    figures = {"auc": 0.8, "validity": 1.0, "plausibility": 0.9, "validity_classifier": 1.0,
               "factuals_already_favourable": 0.93, "validity_warning": already_favourable_warning(0.93, 200)}
    row = next(g for g in judge(figures, None, GateConfig()) if g["name"] == "recourse_validity")
    assert row["passed"] and "93.0% of the factuals already were: uninformative" in row["why"]
    assert "validity is uninformative" in row["warning"]
    calm = judge(figures | {"factuals_already_favourable": 0.2, "validity_warning": None}, None, GateConfig())
    assert not any("warning" in g for g in calm)
