"""Pair synthesis: Q never crosses immutable groups, prefers cheap targets, and is memory-bounded by chunks."""
from __future__ import annotations

import numpy as np
import torch

from genre.core.pairs import PairConfig, PairSampler, split_sources_targets


def _toy(seed: int = 0, n_src: int = 300, n_tgt: int = 400):
    rng = np.random.default_rng(seed)
    src = rng.random((n_src, 4)).astype(np.float32)
    tgt = rng.random((n_tgt, 4)).astype(np.float32)
    src[:, 0] = rng.integers(0, 2, n_src)  # column 0: an immutable binary feature
    tgt[:, 0] = rng.integers(0, 2, n_tgt)
    immutable = np.array([True, False, False, False])
    return src, tgt, immutable


def test_split_sources_targets_uses_gamma_and_label():
    h = np.array([0.1, 0.7, 0.71, 0.9, 0.95])
    y = np.array([1, 1, 0, 1, 1])
    src, tgt = split_sources_targets(np.zeros((5, 2)), y, h, gamma=0.7)
    assert src.tolist() == [0, 1]
    assert tgt.tolist() == [3, 4]  # 2 has h > gamma but an unfavourable label


def test_target_lof_drops_isolated_targets_only():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.5, 0.01, (60, 2)), [[0.95, 0.05]]])  # a crowd of positives and one lone one
    y = np.ones(len(X), dtype=int)
    h = np.full(len(X), 0.9)
    _, every = split_sources_targets(X, y, h, gamma=0.7)
    _, crowded = split_sources_targets(X, y, h, gamma=0.7, target_lof=10)
    assert 60 in every and 60 not in crowded
    assert len(crowded) >= 50  # the crowd stays


def test_pairs_never_cross_immutable_groups():
    src, tgt, immutable = _toy()
    q = PairSampler(src, tgt, immutable, PairConfig(top_k=1000, chunk=64))
    index, prob = q.probabilities()
    same = tgt[index.numpy(), 0] == src[q.kept_, 0][:, None]
    assert (prob.numpy()[~same] == 0).all()  # the whole mass lies on same-group targets
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        drawn = q.sample(gen).numpy()
        np.testing.assert_array_equal(tgt[drawn, 0], src[q.kept_, 0])


def test_q_favours_cheap_targets():
    src, tgt, immutable = _toy()
    q = PairSampler(src, tgt, immutable, PairConfig(lam=5.0))
    gen = torch.Generator().manual_seed(1)
    drawn = torch.stack([q.sample(gen) for _ in range(20)]).numpy()  # (20, n_src)
    cost_drawn = np.abs(tgt[drawn] - src[q.kept_][None]).sum(-1).mean()
    same_group = tgt[None, :, 0] == src[q.kept_, 0][:, None]
    cost_all = np.abs(tgt[None] - src[q.kept_, None]).sum(-1)
    cost_uniform = (cost_all * same_group).sum() / same_group.sum()
    assert cost_drawn < 0.6 * cost_uniform
    # and a larger lambda is cheaper still
    sharp = PairSampler(src, tgt, immutable, PairConfig(lam=50.0))
    drawn = torch.stack([sharp.sample(gen) for _ in range(20)]).numpy()
    assert np.abs(tgt[drawn] - src[sharp.kept_][None]).sum(-1).mean() < cost_drawn


def test_q_matches_its_formula_on_a_small_case():
    src = np.array([[0.0, 0.0], [1.0, 0.5]], dtype=np.float32)
    tgt = np.array([[0.0, 0.1], [0.0, 0.5], [1.0, 0.5], [1.0, 1.0]], dtype=np.float32)
    q = PairSampler(src, tgt, np.array([True, False]), PairConfig(lam=5.0, top_k=2))
    index, prob = q.probabilities()
    assert index[0].tolist() == [0, 1]
    expected = np.exp(-5 * np.array([0.1, 0.5]))
    np.testing.assert_allclose(prob[0].numpy(), expected / expected.sum(), rtol=1e-5)
    assert index[1].tolist() == [2, 3]


def test_sources_without_a_same_group_target_are_dropped():
    src = np.array([[0.0, 0.2], [1.0, 0.3]], dtype=np.float32)
    tgt = np.array([[0.0, 0.5], [0.0, 0.9]], dtype=np.float32)
    q = PairSampler(src, tgt, np.array([True, False]))
    assert q.kept_.tolist() == [0]


def test_chunking_does_not_change_q():
    src, tgt, immutable = _toy(n_src=200)
    a = PairSampler(src, tgt, immutable, PairConfig(chunk=7))
    b = PairSampler(src, tgt, immutable, PairConfig(chunk=1000))
    torch.testing.assert_close(a.cdf_, b.cdf_)
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(a.sample(ga), b.sample(gb))


def _hub_toy():
    """Group 1's sources sit near one lone target; its crowd of targets is far off. Group 0 has a near crowd."""
    rng = np.random.default_rng(3)
    src = np.vstack([np.c_[np.zeros(50), rng.normal(0.2, 0.02, (50, 2))],
                     np.c_[np.ones(30), rng.normal(0.2, 0.02, (30, 2))]]).astype(np.float32)
    crowd0 = np.c_[np.zeros(40), rng.normal(0.3, 0.02, (40, 2))]
    crowd1 = np.c_[np.ones(40), rng.normal(0.8, 0.02, (40, 2))]
    lone = np.array([[1.0, 0.25, 0.25]])
    tgt = np.vstack([crowd0, crowd1, lone]).astype(np.float32)
    return src, tgt, np.array([True, False, False])


def test_hub_share_finds_a_lone_target_that_takes_a_group():
    src, tgt, immutable = _hub_toy()
    q = PairSampler(src, tgt, immutable, PairConfig(lam=20.0))
    assert q.hub_share() == 30 / 80  # every group-1 source puts more than half its mass on the lone target
    index, prob = q.probabilities()
    assert (index[50:, 0] == len(tgt) - 1).all()
    # Without it, group 1's mass spreads over its far crowd and group 0's over its near one: no hub.
    q2 = PairSampler(src, tgt[:-1], immutable, PairConfig(lam=20.0))
    assert q2.hub_share() < 0.1


def test_target_lof_removes_the_hub():
    src, tgt, immutable = _hub_toy()
    X = np.vstack([src, tgt])
    y = np.r_[np.zeros(len(src)), np.ones(len(tgt))].astype(int)
    h = np.r_[np.full(len(src), 0.2), np.full(len(tgt), 0.9)]
    s_idx, t_idx = split_sources_targets(X, y, h, gamma=0.7, target_lof=10)
    assert len(X) - 1 not in t_idx  # the lone target is an outlier among the favourable rows
    assert PairSampler(X[s_idx], X[t_idx], immutable, PairConfig(lam=20.0)).hub_share() < 0.1
