"""Compiled single queries (`GenRe.compile_single_queries`, issue 14): the same samples as the eager path, and a
fall back to it, with a reason, when the compiler fails. Inductor compiles for real here, an untrained
generator of the flow tests' shape (`compile_setting`)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from genre.core.generator import Generator, GeneratorConfig
from genre.core.sampler import GenRe

K, T = 5, 0.7  # the fall-back tests' setting (torch.compile is replaced there: nothing is compiled)


@pytest.fixture(scope="module")
def small(compas_setup, compile_setting) -> GenRe:
    s = compas_setup
    return GenRe(Generator(GeneratorConfig(d=s.d, seed=3, **compile_setting["model"])), s.encoder, s.classifier)


@pytest.fixture(scope="module")
def compiled(small, compile_setting) -> GenRe:
    twin = small._with()  # the same models, its own compiled decoder
    c = compile_setting
    assert twin.compile_single_queries(k=c["k"], temperature=c["temperature"], monotone=c["monotone"])
    return twin


def test_compiled_single_queries_equal_the_eager_ones(small, compiled, compas_setup, compile_setting):
    c = compile_setting
    setting = dict(k=c["k"], temperature=c["temperature"], monotone=c["monotone"])
    factuals = compas_setup.pick_factuals(40, seed=2)
    rows = np.arange(40, dtype=np.uint64) * 7919
    for i in range(len(factuals)):
        one = factuals[i : i + 1]
        got = compiled.sample(one, seed=5, row_seeds=rows[i : i + 1], **setting)
        want = small.sample(one, seed=5, row_seeds=rows[i : i + 1], **setting)
        assert got.tobytes() == want.tobytes(), f"factual {i}"
    # The graph was used (not the eager fall-back), once per setting, and a batch still decodes eagerly.
    assert [e["compiled"] for e in compiled.compiled.events] == [True]
    batch = compiled.generate(factuals, seed=5, **setting)
    np.testing.assert_array_equal(batch, small.generate(factuals, seed=5, **setting))


def test_a_servers_threads_may_call_the_graph_at_once(small, compiled, compas_setup, compile_setting):
    """uvicorn answers requests on several threads: concurrent single queries get the eager answers."""
    import threading

    c = compile_setting
    setting = dict(k=c["k"], temperature=c["temperature"], monotone=c["monotone"], seed=2)
    factuals = compas_setup.pick_factuals(30, seed=6)
    want = [small.generate(factuals[i : i + 1], **setting).tobytes() for i in range(len(factuals))]
    wrong, errors = [], []

    def answer(offset: int) -> None:
        try:
            for i in range(offset, len(factuals), 2):
                if compiled.generate(factuals[i : i + 1], **setting).tobytes() != want[i]:
                    wrong.append(i)
        except Exception as exc:  # surfaced below: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=answer, args=(o,)) for o in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not wrong
    assert len(compiled.compiled.events) == 1  # compiled once, not once per thread


def test_a_setting_that_fails_to_compile_falls_back_to_the_eager_path(small, compas_setup, monkeypatch, caplog):
    twin = small._with()

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler on this host")

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken)
    with caplog.at_level(logging.WARNING, logger="genre.core.compiled"):
        assert twin.compile_single_queries(k=K, temperature=T) is False
    assert "no C++ compiler on this host" in caplog.text
    assert twin.compiled.events[-1]["compiled"] is False
    one = compas_setup.pick_factuals(3, seed=4)[:1]
    got = twin.generate(one, k=K, temperature=T, seed=1)
    np.testing.assert_array_equal(got, small.generate(one, k=K, temperature=T, seed=1))


def test_a_graph_that_disagrees_with_the_eager_path_is_not_used(small, compas_setup, monkeypatch, caplog):
    twin = small._with()
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (lambda f, u: torch.zeros(len(u), f.shape[1])))
    with caplog.at_level(logging.WARNING, logger="genre.core.compiled"):
        assert twin.compile_single_queries(k=K, temperature=T) is False
    assert "differs from the eager one" in caplog.text
    one = compas_setup.pick_factuals(3, seed=4)[:1]
    np.testing.assert_array_equal(twin.generate(one, k=K, temperature=T, seed=1),
                                  small.generate(one, k=K, temperature=T, seed=1))


def test_every_swapped_in_pair_compiles_and_answers_with_its_own_generator(small, compas_setup,
                                                                                  compile_setting, monkeypatch):
    """A server swapping champions compiles the same setting for one new generator after another: each pair must
    answer with its own weights (as its eager twin does, not as the previous pair's graph would), and dynamo
    must never give up on recompiling (its limit is 8 by default; here it is 1 and hitting it raises, which
    would show as a fall-back)."""
    import torch._dynamo.config as dynamo_config

    monkeypatch.setattr(dynamo_config, "recompile_limit", 1)
    monkeypatch.setattr(dynamo_config, "fail_on_recompile_limit_hit", True)
    c = compile_setting
    setting = dict(k=c["k"], temperature=c["temperature"], monotone=c["monotone"])
    s, one = compas_setup, compas_setup.pick_factuals(1, seed=11)
    answers = set()
    for swap in range(3):  # a new generator each time, as a new champion brings: dynamo's guards on it fail
        generator = Generator(GeneratorConfig(d=s.d, seed=20 + swap, **compile_setting["model"]))
        pair, eager = (GenRe(generator, s.encoder, s.classifier) for _ in range(2))
        assert pair.compile_single_queries(**setting), pair.compiled.events
        assert [e["compiled"] for e in pair.compiled.events] == [True], f"swap {swap}"
        got = pair.sample(one, seed=0, **setting).tobytes()
        assert got == eager.sample(one, seed=0, **setting).tobytes(), f"swap {swap}"
        answers.add(got)
    assert len(answers) > 1  # the generators differ, so a graph reused across pairs would have shown
