"""The generator: shapes, a loss that falls on a toy problem, cached decoding equals the full decoder,
and checkpoints that rebuild the same model."""
from __future__ import annotations

import pytest
import torch

from genre.core.classifier import one_thread
from genre.core.generator import Generator, GeneratorConfig, Shared

TINY = dict(emb=16, heads=2, enc_layers=1, dec_layers=2, ff=32, value_hidden=8)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matmuls: two threads on the shared cores are far slower than one (as in training).
    with one_thread():
        yield


def test_forward_shapes_and_soft_targets():
    model = Generator(GeneratorConfig(d=5, n_bins=20, **TINY))
    x, xt = torch.rand(8, 5), torch.rand(8, 5)
    logits, loss = model(x, xt)
    assert logits.shape == (8, 5, 20) and loss.ndim == 0
    targets = model.soft_targets(torch.tensor([[0.0, 1.0, 0.5]]))
    torch.testing.assert_close(targets.sum(-1), torch.ones(1, 3))
    assert targets[0, 0].argmax() == 0 and targets[0, 1].argmax() == 19  # the grid reaches both ends
    assert model.bins[0] == 0.0 and model.bins[-1] == 1.0


def test_loss_falls_on_a_toy_problem():
    # Toy pairs: the target is the source mirrored (1 - x) with its first feature copied.
    torch.manual_seed(0)
    x = torch.rand(512, 4)
    xt = torch.cat([x[:, :1], 1 - x[:, 1:]], dim=1)
    model = Generator(GeneratorConfig(d=4, n_bins=20, **TINY))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(model(x, xt)[1])
    for _ in range(150):
        _, loss = model(x, xt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(model(x, xt)[1])
    assert last < 0.6 * first
    # and the learnt distribution puts its mode near the right bin for the copied feature
    with torch.no_grad():
        logits, _ = model(x[:64], xt[:64])
    mode = model.bins[logits[:, 0].argmax(-1)]
    assert (mode - x[:64, 0]).abs().mean() < 0.1


def test_incremental_steps_equal_the_full_decoder():
    model = Generator(GeneratorConfig(d=6, n_bins=10, **TINY)).eval()
    x, xt = torch.rand(4, 6), torch.rand(4, 6)
    with torch.no_grad():
        full, _ = model(x, xt)  # (4, 6, 10), teacher-forced
        mem_kv = model.memory_kv(model.encode(x, torch.zeros(4)))
        token, cache, steps = torch.ones(4), None, []
        for t in range(6):
            logits, cache = model.step(token, t, mem_kv, cache)
            steps.append(logits)
            token = xt[:, t]
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    model = Generator(GeneratorConfig(d=3, **TINY, seed=7))
    model.save(tmp_path / "g.pt")
    again = Generator.load(tmp_path / "g.pt")
    assert again.config == model.config
    x = torch.rand(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(again(x, x)[0], model.eval()(x, x)[0])
    assert not (tmp_path / "g.pt.tmp").exists()


def test_same_seed_same_initial_weights():
    a, b = Generator(GeneratorConfig(d=3, **TINY)), Generator(GeneratorConfig(d=3, **TINY))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_steps_over_shared_memories_equal_steps_over_one_memory_per_row():
    """The sampler's k samples of a factual share one encoder memory; the grouped cross-attention must give
    what a separate copy of the memory per row gives."""
    model = Generator(GeneratorConfig(d=5, n_bins=10, **TINY)).eval()
    x, xt = torch.rand(3, 5), torch.rand(12, 5)  # 3 factuals x 4 samples each
    with torch.no_grad():
        shared = model.memory_kv(model.encode(x, torch.zeros(3)))
        per_row = [tuple(t.repeat_interleave(4, dim=0) for t in kv) for kv in shared]
        token, c1, c2 = torch.ones(12), None, None
        for t in range(5):
            a, c1 = model.step(token, t, shared, c1)
            b, c2 = model.step(token, t, per_row, c2)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            token = xt[:, t]


def test_steps_over_distinct_prefixes_equal_the_whole_batch_bit_for_bit():
    """`step(slots=...)` computes U distinct prefixes of a batch, each at one of its rows' positions: the
    logits equal the whole batch's rows exactly (the sampler relies on it for identical samples), and
    `logits=False` leaves the same cache. On the project's bin grid (50 bins): with 10 bins this CPU's
    kernel for the head's einsum rounds a row differently depending on its neighbours."""
    model = Generator(GeneratorConfig(d=4, n_bins=50, **TINY)).eval()
    m, k = 9, 4
    x = torch.rand(m, 4)
    with torch.no_grad():
        mem_kv = model.memory_kv(model.encode(x, torch.zeros(m)))
        token = torch.rand(m * k)
        token[1::2] = token[0::2]  # rows 2i and 2i + 1 share a prefix
        full, full_cache = model.step(token, 0, mem_kv, None)
        slots = torch.arange(0, m * k, 2)
        part, part_cache = model.step(token[slots], 0, mem_kv, None, shared=Shared(slots // k, slots % k, k))
        assert torch.equal(part, full[slots]) and torch.equal(part, full[slots + 1])
        assert all(torch.equal(a[0][:, :, :1], b[0][slots, :, :1]) for a, b in zip(part_cache, full_cache))
        none, skip_cache = model.step(token[slots], 0, mem_kv, None, shared=Shared(slots // k, slots % k, k), logits=False)
        assert none is None
        assert all(torch.equal(a[1][:, :, :1], b[1][:, :, :1]) for a, b in zip(skip_cache, part_cache))
