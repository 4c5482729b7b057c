"""DiCE adapter, the capped one-by-one run, the side-by-side comparison and the benchmark's files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from genre.bench.run_peers import compare, format_table, must_show
from genre.bench.plots import write_json, write_plots
from genre.bench.scaling import describe_growth, loglog_slope
from genre.evaluation.methods import get_method
from genre.core.metrics import categorical_out_of_domain, immutable_changed
from genre.bench.peers_dice import DiceRecourse, RawUnitsModel, permitted_ranges

N = 6


@pytest.fixture(scope="module")
def factuals(compas_setup):
    return compas_setup.pick_factuals(N, seed=0)


@pytest.fixture(scope="module")
def dice_runs(compas_setup, factuals):
    return {m: DiceRecourse(compas_setup, m, seed=0).run(factuals, time_cap_s=600) for m in ("random", "genetic")}


def test_raw_units_model_is_h(compas_setup, factuals):
    model = RawUnitsModel(compas_setup.encoder, compas_setup.classifier)
    table = compas_setup.encoder.inverse_transform(factuals)
    proba = model.predict_proba(table)
    assert proba.shape == (N, 2)
    np.testing.assert_allclose(proba[:, 1], compas_setup.classifier.predict_proba(factuals), atol=1e-6)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(model.predict(table)) <= {0, 1}


def test_permitted_ranges_come_from_training_data(compas_setup):
    ranges = permitted_ranges(compas_setup)
    raw = compas_setup.encoder.inverse_transform(compas_setup.X_train)
    assert ranges["age"] == [raw["age"].min(), raw["age"].max()]
    assert ranges["c_charge_degree"] == ["F", "M"]


@pytest.mark.parametrize("method", ["random", "genetic"])
def test_dice_keeps_immutables_and_categorical_domains(compas_setup, factuals, dice_runs, method):
    run = dice_runs[method]
    assert run.recourses.shape == factuals.shape
    assert run.n_finished == N  # no cap reached at 600 s
    assert run.n_found >= 1, "DiCE found no counterfactual for any of the compas factuals"
    assert not immutable_changed(factuals, run.recourses, compas_setup.spec).any()
    assert not categorical_out_of_domain(run.recourses, compas_setup.encoder).any()
    # What DiCE found moves something and is accepted by h (DiCE's own stopping rule is h > 0.5).
    found = run.found
    assert (np.abs(run.recourses[found] - factuals[found]).sum(1) > 0).all()
    assert (compas_setup.classifier.predict_proba(run.recourses[found]) > 0.5).all()
    # Rows without a counterfactual hold the factual itself.
    np.testing.assert_array_equal(run.recourses[~found], factuals[~found])


def test_time_cap_stops_in_count_terms(compas_setup, factuals):
    run = DiceRecourse(compas_setup, "random", seed=0).run(factuals, time_cap_s=0.0)
    assert run.n_finished == 0 and run.n_found == 0
    np.testing.assert_array_equal(run.recourses, factuals)
    assert np.isnan(run.seconds).all()
    run = DiceRecourse(compas_setup, "random", seed=0).run(factuals, time_cap_s=1e-9)
    # The first factual starts before any time has passed only if the clock has not ticked; either way the
    # finished ones are a prefix and never more than n.
    assert run.n_finished <= N
    assert run.finished[: run.n_finished].all() and not run.finished[run.n_finished :].any()


def test_same_seed_same_recourses(compas_setup, factuals, dice_runs):
    again = DiceRecourse(compas_setup, "random", seed=0).run(factuals[:3], time_cap_s=600)
    np.testing.assert_array_equal(again.recourses, dice_runs["random"].recourses[:3])


def test_registered_in_the_method_registry(compas_setup, factuals):
    out = get_method("dice-random")(factuals[:2], compas_setup)
    assert out.shape == (2, compas_setup.d)
    assert not immutable_changed(factuals[:2], out, compas_setup.spec).any()


def test_unknown_dice_method_is_refused(compas_setup):
    with pytest.raises(ValueError, match="DiCE method"):
        DiceRecourse(compas_setup, "gradient")


def test_compare_writes_table_json_and_plots(compas_setup, tmp_path):
    report = compare(compas_setup, ["nnr", "dice-random", "no-such-method"], n=4, seed=0, time_cap_s=600,
                     latency_queries=2, memory_queries=1, progress=False)
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == {"nnr", "dice-random"}
    assert "no-such-method" in report["skipped"]
    for row in rows.values():
        assert row["finished"] <= row["n"] == 4
        assert 0.0 <= row["validity"] <= 1.0 and 0.0 <= row["plausibility"] <= 1.0
        assert row["recourses_per_second"] > 0 and row["latency_p95_ms"] >= row["latency_median_ms"] > 0
        assert row["peak_python_mb"] >= 0
    assert rows["nnr"]["latency_queries"] == 2
    table = format_table(report)
    assert "| nnr | 4 / 4 |" in table and "dice-random" in table and "skipped no-such-method" in table

    scaling = {
        "sampling": {"dataset": "compas", "k": 10, "points": [{"factuals": s, "seconds": 0.01 * s} for s in (1, 10, 100)],
                     "growth": describe_growth([1, 10, 100], [0.01, 0.1, 1.0])},
        "training": {"dataset": "compas", "epochs": 1, "points": [{"rows": r, "seconds_per_epoch": r / 1e3} for r in (500, 1000)],
                     "growth": describe_growth([500, 1000], [0.5, 1.0])},
    }
    result = {"datasets": {"compas": report}, "scaling": scaling}
    path = write_json(result, tmp_path / "peers.json")
    assert json.loads(path.read_text())["datasets"]["compas"]["n"] == 4
    pngs = write_plots(result, tmp_path)
    assert {p.name for p in pngs} == {"cost_validity.png", "throughput.png", "scaling_sampling.png", "scaling_training.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_json_writer_turns_nan_into_null(tmp_path):
    path = write_json({"a": float("nan"), "b": np.float64(1.5), "c": [np.int64(2), float("inf")]}, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"a": None, "b": 1.5, "c": [2, None]}


def test_growth_slopes():
    assert loglog_slope([1, 10, 100], [2, 20, 200]) == pytest.approx(1.0)
    assert describe_growth([1, 10, 100, 1000], [1, 1, 10, 100], fit_from=10)["verdict"] == "linear"
    assert describe_growth([100, 1000], [1.0, 2.0])["verdict"] == "sub-linear"
    assert describe_growth([100, 1000], [1.0, 1000.0])["verdict"] == "super-linear"


def test_must_show_compares_against_both_dice_methods():
    def row(m, rps, v, p):
        return {"method": m, "recourses_per_second": rps, "validity": v, "plausibility": p}

    report = {"results": [row("genre", 1000, 0.99, 0.95), row("dice-random", 5, 0.8, 0.5), row("dice-genetic", 2, 0.7, 0.96)]}
    c = must_show(report)["genre"]
    assert c["speedup_vs_dice_random"] == pytest.approx(200)
    assert c["speedup_at_least_100x"] and c["validity_above_dice"]
    assert not c["plausibility_above_dice"] and not c["holds"]
    with_wachter = {"results": report["results"][:2] + [row("wachter", 900, 0.99, 0.4)]}
    w = must_show(with_wachter)["genre"]
    assert not w["validity_above_wachter"] and w["plausibility_above_wachter"] and not w["holds"]


def test_must_show_asks_for_1000x_dice_and_cfrls_speed_with_better_quality():
    def row(m, rps, v, p):
        return {"method": m, "recourses_per_second": rps, "validity": v, "plausibility": p}

    base = [row("dice-random", 5, 0.8, 0.5), row("dice-genetic", 2, 0.7, 0.6)]
    fast = must_show({"results": [row("genre", 6000, 0.99, 0.95), *base, row("cfrl", 5000, 0.65, 0.7)]})["genre"]
    assert fast["speedup_at_least_1000x"] and fast["at_least_cfrl_speed"] and fast["speed_vs_cfrl"] == pytest.approx(1.2)
    assert fast["validity_above_cfrl"] and fast["plausibility_above_cfrl"] and fast["holds"]
    slow = must_show({"results": [row("genre", 4000, 0.99, 0.95), *base, row("cfrl", 5000, 0.65, 0.7)]})["genre"]
    assert not slow["speedup_at_least_1000x"] and not slow["at_least_cfrl_speed"] and not slow["holds"]


def test_dice_crash_counts_as_not_found(compas_setup, factuals, monkeypatch):
    dice = DiceRecourse(compas_setup, "genetic", seed=0)

    def crash(*args, **kwargs):
        raise ValueError("empty range for randrange()")  # DiCE 0.12's collapsed-population defect

    monkeypatch.setattr(dice.explainer, "generate_counterfactuals", crash)
    run = dice.run(factuals[:2], time_cap_s=600)
    assert run.n_finished == 2 and run.n_errors == 2 and run.n_found == 0
    np.testing.assert_array_equal(run.recourses, factuals[:2])

    def other_bug(*args, **kwargs):
        raise ValueError("something else")

    monkeypatch.setattr(dice.explainer, "generate_counterfactuals", other_bug)
    with pytest.raises(ValueError, match="something else"):
        dice.run(factuals[:1], time_cap_s=600)


def test_memory_probe_forks_after_multithreaded_torch():
    import torch

    from genre.bench.memory import peak_memory_isolated

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(512, 512)
        (a @ a).sum()  # the parent's intra-op pool is now live: a naive forked child would deadlock

        def work():
            block = np.ones(8 * 2**20 // 8)  # 8 MiB through numpy, which tracemalloc sees
            return float((torch.randn(256, 256) @ torch.randn(256, 256)).sum()) + block.sum()

        python_mb, rss_mb, where = peak_memory_isolated(work, timeout_s=120)
    finally:
        torch.set_num_threads(threads)
    assert where == "forked child"
    assert python_mb >= 7.5 and rss_mb >= 0
