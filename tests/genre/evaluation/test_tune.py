"""`genre tune` chooses settings inside the training split and never opens the test split."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from genre.core import datasets
from genre.evaluation import tune as tune_mod
from genre.core.settings import Settings
from genre.core.train_generator import Sampling, load_recipe
from genre.evaluation.tune import _pick, rank, tune

TINY_GRID = {"lam": (5.0, 20.0), "target_lof": (0,), "size": ("small",)}


@pytest.fixture()
def train_only(tmp_path, monkeypatch) -> tuple[Settings, list[str]]:
    """A data folder holding compas' training file alone, and a resolver that fails on any test split."""
    src = Path(datasets.resolve_file(datasets.COMPAS, "train", Settings.from_env().data_dir))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(src, data / src.name)
    opened: list[str] = []
    real = datasets.resolve_file

    def guarded(spec, split, data_dir=None):
        opened.append(split)
        if split != "train":
            raise AssertionError(f"tuning asked for the {split} split")
        return real(spec, split, data_dir)

    monkeypatch.setattr(tune_mod, "resolve_file", guarded)
    monkeypatch.setattr(datasets, "resolve_file", guarded)
    monkeypatch.setenv("GENRE_TUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tune_mod, "read_table", _recording(tune_mod.read_table, opened))
    return Settings(home=tmp_path / "home", data_dir=data), opened


def _recording(read, opened):
    def wrapper(path, spec, **kw):
        opened.append(Path(path).name)
        return read(path, spec, **kw)

    return wrapper


def test_tuning_reads_the_training_file_alone_and_writes_a_loadable_recipe(train_only, tmp_path):
    settings, opened = train_only
    result = tune("compas", settings=settings, seeds=(0, 1), grid=TINY_GRID, epochs=3, max_factuals=60,
                  paper_grid=[Sampling("max_prob", 0.1, 10), Sampling("max_prob", 1.0, 10)],
                  best_grid=[Sampling("min_cost", 0.5, 10), Sampling("robust_min_cost", 0.5, 10, 0.6)])
    assert set(opened) == {"train", "compas_train.csv"}
    # Two tuning seeds: each setting is judged by the mean of its two seeds' figures.
    assert result["seeds"] == [0, 1]
    for row in result["sampling_search"]["best"]:
        assert len(row["per_seed"]) == 2
        for key in ("cost", "validity", "plausibility"):
            assert row[key] == pytest.approx(sum(r[key] for r in row["per_seed"]) / 2)
    assert result["sampling_search"]["best"][0]["per_seed"][0] != result["sampling_search"]["best"][0]["per_seed"][1]
    assert not any("test" in name for name in opened)
    # Successive halving: both candidates start, one goes on to the full epochs.
    assert [e["rung"] for e in result["training_search"]] == [0, 0, 1]
    assert result["training_search"][-1]["epochs"] == 3
    assert len(result["sampling_search"]["paper"]) == 2 and len(result["sampling_search"]["best"]) == 2
    chosen = min(result["sampling_search"]["best"], key=rank)
    assert result["recipe"]["sampling"]["best"] == chosen["sampling"]
    out = tmp_path / "recipes"
    out.mkdir()
    (out / "compas.json").write_text(json.dumps(result["recipe"]))
    r = load_recipe("compas", 7, directory=out)
    assert r.train.pairs.lam in TINY_GRID["lam"] and r.best == Sampling(**result["recipe"]["sampling"]["best"])
    # A rerun resumes from the cache: no candidate is trained again.
    again = tune("compas", settings=settings, seeds=(0, 1), grid=TINY_GRID, epochs=3, max_factuals=60,
                 paper_grid=[Sampling("max_prob", 0.1, 10)], best_grid=[Sampling("min_cost", 0.5, 10)])
    assert [e["train_seconds"] for e in again["training_search"]] == [e["train_seconds"] for e in result["training_search"]]


def test_reaching_the_targets_beats_any_cost_and_ties_go_to_the_smaller_choice():
    cheap_short = {"cost": 0.2, "validity": 0.96, "plausibility": 0.99, "k": 10}
    dear_meets = {"cost": 0.9, "validity": 0.98, "plausibility": 0.95, "k": 20}
    near_meets_small = {"cost": 0.905, "validity": 0.97, "plausibility": 0.96, "k": 10}
    far_meets_small = {"cost": 0.95, "validity": 0.99, "plausibility": 0.99, "k": 5}
    rows = [cheap_short, dear_meets, near_meets_small, far_meets_small]
    assert rank(cheap_short) > rank(dear_meets)  # any shortfall loses to a setting that reaches both
    assert _pick(rows, lambda r: r["k"]) is near_meets_small  # within TIE (0.01) of the cheapest, the smaller k
    assert _pick([cheap_short, dear_meets], lambda r: r["k"]) is dear_meets
    # None reaches both: the smallest shortfall wins, whatever its cost.
    a = {"cost": 0.3, "validity": 0.90, "plausibility": 0.99, "k": 10}
    b = {"cost": 1.5, "validity": 0.96, "plausibility": 0.99, "k": 10}
    assert _pick([a, b], lambda r: r["k"]) is b


def test_a_rung_keeps_a_cheap_candidate_just_short_of_the_targets_but_not_one_far_short():
    def entry(i, cost, validity, best_cost=None, best_validity=None):
        best = {"cost": best_cost or cost, "validity": best_validity or validity, "plausibility": 0.96}
        return {"candidate": i, "cost": cost, "validity": validity, "plausibility": 0.96, "best_rule": best}

    entries = [entry(0, 0.60, 0.975), entry(1, 0.61, 0.98), entry(2, 0.62, 0.99),
               entry(3, 0.30, 0.945),  # 0.025 short: within the slack, the cheapest goes on
               entry(4, 0.20, 0.93),  # 0.04 short: counts as short
               entry(5, 0.65, 0.98, best_cost=0.28, best_validity=0.95)]  # its best rule is cheap and 0.02 short
    assert tune_mod.survivors(entries, keep=1) == [3, 5]
    assert tune_mod.survivors(entries, keep=1, slack=0.0) == [0]  # the strict cut keeps the cheapest that reaches both
    assert tune_mod.rung_rank(entries[4]) == (pytest.approx(0.01), 0.2)


def test_a_broken_recipe_file_names_itself(tmp_path):
    (tmp_path / "compas.json").write_text(json.dumps({"generator": {}}))
    with pytest.raises(ValueError, match=r"compas\.json"):
        load_recipe("compas", 7, directory=tmp_path)


def test_without_a_recipe_file_the_default_says_so(tmp_path):
    assert "genre tune --dataset nosuch" in load_recipe("nosuch", 3, directory=tmp_path).source


def test_tunings_h_takes_as_many_optimizer_steps_as_the_protocols():
    spec = datasets.COMPAS
    # compas: 4629 training rows are 3 batches of 2048 a epoch; tuning's 3703 rows are 2: 100 epochs -> 150.
    assert tune_mod.matched_h_config(spec, 0, n_protocol=4629, n_fit=3703).epochs == 150
    assert tune_mod.matched_h_config(spec, 0, n_protocol=36624, n_fit=29300).epochs == 120  # adult's sizes: 18 / 15
    assert tune_mod.matched_h_config(spec, 0, n_protocol=2000, n_fit=1600).epochs == 100  # one batch either way
    assert tune_mod.matched_h_config(spec, 0, n_protocol=4629, n_fit=3703, overrides={"epochs": 5}).epochs == 5
