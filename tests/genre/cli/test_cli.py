"""`genre evaluate`: the report's shape, the table, the JSON file and clear errors."""
from __future__ import annotations

import json

import pytest

from genre.cli import main as cli
from genre.evaluation import evaluate as evaluate_mod
from genre.evaluation.evaluate import evaluate, format_table

FIGURES = ("method", "cost", "validity", "validity_classifier", "validity_retrained", "plausibility", "score",
           "recourses_per_second")


def test_evaluate_scores_every_method_on_the_same_factuals(compas_setup):
    report = evaluate(compas_setup, ["nnr", "wachter"], n=40, seed=0)
    assert (report["dataset"], report["n"], report["seed"]) == ("compas", 40, 0)
    assert [r["method"] for r in report["results"]] == ["nnr", "wachter"]
    for row in report["results"]:
        assert set(FIGURES) <= set(row) and row["recourses_per_second"] > 0
    assert report["results"][0]["validity_classifier"] == 1.0
    table = format_table(report)
    assert "| nnr |" in table and "| wachter |" in table and "validity_retrained" in table
    # Robustness to model change: the mean share the five retrained classifiers accept, for each method.
    import numpy as np

    from genre.evaluation.methods import get_method
    factuals = compas_setup.pick_factuals(40, 0)
    wachter = get_method("wachter")(factuals, compas_setup)
    expected = np.mean([np.mean(c.predict_proba(wachter) > 0.5) for c in compas_setup.retrained_classifiers()])
    assert report["results"][1]["validity_retrained"] == pytest.approx(expected)


def test_cli_writes_the_json_report(compas_setup, tmp_path, monkeypatch, capsys):
    # The paper's 100-epoch h is trained by `genre evaluate` itself; here the session's quick set-up stands in.
    monkeypatch.setattr(evaluate_mod, "load_protocol", lambda spec, seed, progress: compas_setup)
    out = tmp_path / "r.json"
    code = cli.main(["evaluate", "--dataset", "compas", "--methods", "nnr,wachter", "--n", "30", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 30 and len(report["results"]) == 2
    assert all(set(FIGURES) <= set(r) for r in report["results"])
    assert "| nnr |" in capsys.readouterr().out


def test_cli_unknown_dataset_is_a_clear_error(capsys):
    assert cli.main(["evaluate", "--dataset", "nosuch", "--n", "5"]) == 2
    assert "unknown data set 'nosuch'" in capsys.readouterr().err


def test_cli_needs_a_subcommand():
    with pytest.raises(SystemExit):
        cli.main([])


def test_all_negatives_and_several_seeds(compas_setup, tmp_path, monkeypatch, capsys):
    seen = []

    def fake_load(spec, seed, progress):
        seen.append(seed)
        return compas_setup

    monkeypatch.setattr(evaluate_mod, "load_protocol", fake_load)
    out = tmp_path / "r.json"
    code = cli.main(["evaluate", "--dataset", "compas", "--methods", "nnr", "--n", "all", "--seeds", "0,1",
                     "--out", str(out)])
    assert code == 0 and seen == [0, 1]
    report = json.loads(out.read_text())
    negatives = len(compas_setup.factual_indices(None))
    assert [r["n"] for r in report["per_seed"]] == [negatives, negatives]
    mean = report["mean"]["results"][0]
    assert mean["method"] == "nnr" and mean["cost_std"] == pytest.approx(0.0, abs=1e-9)
    assert mean["cost"] == pytest.approx(report["per_seed"][0]["results"][0]["cost"])
    assert "mean ± std over seeds [0, 1]" in capsys.readouterr().out


def test_bad_n_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--dataset", "compas", "--n", "some"])
    assert "--n must be a positive integer or 'all'" in capsys.readouterr().err
