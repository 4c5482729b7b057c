"""The speed bench's pieces: the threads x batch-size grid, single-query latency, the plot and the targets."""
from __future__ import annotations

from genre.bench import run as bench, throughput as bench_speed
from genre.core.generator import Generator, GeneratorConfig
from genre.core.sampler import GenRe


def _genre(setup) -> GenRe:
    # Speed does not depend on the weights: an untrained generator of a small shape is enough here.
    cfg = GeneratorConfig(d=setup.d, emb=16, heads=2, enc_layers=1, dec_layers=1, ff=32, value_hidden=8)
    return GenRe(Generator(cfg), setup.encoder, setup.classifier)


def test_grid_covers_every_batch_size_and_thread_count(compas_setup, tmp_path):
    genre, pool = _genre(compas_setup), compas_setup.pick_factuals(20, seed=0)
    points = bench_speed.throughput_grid(genre, pool, k=3, temperature=0.5, sizes=(1, 30), threads=(1, 2),
                                         min_seconds=0.0)
    assert [(p["factuals"], p["threads"]) for p in points] == [(1, 1), (1, 2), (30, 1), (30, 2)]
    for p in points:
        # min_seconds 0: the fewest calls the median is taken over
        assert p["recourses_per_second"] > 0 and p["repeats"] == 3 and len(p["load_average"]) == 3
    single = bench_speed.single_query(genre, pool, k=3, temperature=0.5, queries=5)
    assert single["queries"] == 5 and single["p90_ms"] >= single["p50_ms"] > 0
    row = {"dataset": "compas", "k": 3, "grid": points}
    png = bench_speed.plot_grid([row, {**row, "dataset": "adult"}], tmp_path / "grid.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_are_issue_14s():
    row = {"dataset": "compas", "recourses_per_second": {"genre": 9_999.0}, "single_query": {"p50_ms": 4.0}}
    t = bench._targets(row)
    assert t["target"] == 10_000 and not t["met"] and t["single_query_met"]
    adult = bench._targets({**row, "dataset": "adult", "single_query": {"p50_ms": 5.5}})
    assert adult["target"] == 5_000 and adult["met"] and not adult["single_query_met"]
    assert "target" not in bench._targets({**row, "dataset": "heloc"})


def test_median_seconds_repeats_until_the_time_is_spent_and_takes_the_median(monkeypatch):
    """A fake clock: call i takes i + 1 ticks of 0.1 s, so the loop's arithmetic is checked exactly."""
    clock = {"now": 0.0, "calls": 0}

    def work():
        clock["calls"] += 1
        clock["now"] += 0.1 * clock["calls"]

    monkeypatch.setattr(bench_speed.time, "perf_counter", lambda: clock["now"])
    seconds, repeats = bench_speed._median_seconds(work, min_seconds=1.0)
    # 0.1 + 0.2 + 0.3 + 0.4 = 1.0 s after 4 calls: it stops there; the median of (0.1, 0.2, 0.3, 0.4) is 0.25.
    assert (repeats, clock["calls"]) == (4, 4) and abs(seconds - 0.25) < 1e-9
    clock.update(now=0.0, calls=0)
    assert bench_speed._median_seconds(work, min_seconds=100.0, max_repeats=6)[1] == 6  # capped
    clock.update(now=0.0, calls=0)
    assert bench_speed._median_seconds(work, min_seconds=0.0)[1] == 3  # never fewer than 3


def test_compiled_single_query_is_timed_beside_the_eager_one(compas_setup, compile_setting):
    c = compile_setting  # the shape and setting other tests compile: inductor's on-disk cache shares the work
    s = compas_setup
    genre = GenRe(Generator(GeneratorConfig(d=s.d, **c["model"])), s.encoder, s.classifier)
    pool = s.pick_factuals(8, seed=0)
    side = bench_speed.single_query_compiled(genre, pool, k=c["k"], temperature=c["temperature"], queries=8,
                                             monotone=c["monotone"])
    assert side["compiled"] and side["identical_answers"] == side["queries"] == 8 and side["rounds"] == 2
    assert side["compiled_graph"]["p90_ms"] >= side["compiled_graph"]["p50_ms"] > 0 and side["eager"]["p50_ms"] > 0
    assert genre.compiled is None  # the eager GenRe it was given is left as it was
    row = {"dataset": "compas", "recourses_per_second": {"genre": 1.0}, "single_query": {"p50_ms": 9.0},
           "single_query_compiled": {**side, "compiled_graph": {"p50_ms": 4.0, "p90_ms": 5.0}}}
    t = bench._targets(row)
    assert t["single_query_compiled_p50_ms"] == 4.0 and t["single_query_compiled_met"] and not t["single_query_met"]
    differs = {**row["single_query_compiled"], "identical_answers": 7}
    assert not bench._targets({**row, "single_query_compiled": differs})["single_query_compiled_met"]
