"""Behaviour of GenRe's sampler on compas: shapes, seeds, incremental == re-run prefix, the constraints it
guarantees, save/load, and validity under h of a quickly trained generator."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from genre.core.generator import GeneratorConfig
from genre.core.metrics import categorical_out_of_domain
from genre.core.classifier import SecondOpinion
from genre.core.sampler import SECOND_OPINION_MARGIN, GenRe
from genre.core.selection import knn_vote
from genre.core.train_generator import TrainConfig, train_generator

# A small, quick recipe: enough for the behaviour checked here, not the README's figures.
QUICK_MODEL = dict(emb=32, heads=4, enc_layers=1, dec_layers=2, ff=64, value_hidden=16)
QUICK_TRAIN = TrainConfig(epochs=12, patience=12, seed=0)


@pytest.fixture(scope="module")
def genre(compas_setup) -> GenRe:
    s = compas_setup
    return train_generator(s.X_train, s.h_labels, encoder=s.encoder, classifier=s.classifier,
                           config=GeneratorConfig(d=s.d, **QUICK_MODEL), train=QUICK_TRAIN, progress=False)


@pytest.fixture(scope="module")
def factuals(compas_setup) -> np.ndarray:
    return compas_setup.pick_factuals(100, seed=0)


@pytest.fixture(scope="module")
def recourses(genre, factuals) -> dict:
    return {rule: genre.generate(factuals, k=10, select=rule, seed=0) for rule in ("max_prob", "min_cost")}


def test_shapes(genre, factuals, recourses):
    assert genre.sample(factuals[:7], k=3, seed=0).shape == (7, 3, factuals.shape[1])
    assert recourses["max_prob"].shape == factuals.shape
    assert recourses["max_prob"].dtype == np.float32
    assert genre.generate(factuals[:0], k=4).shape == (0, factuals.shape[1])


def test_a_fixed_seed_gives_identical_output(genre, factuals, recourses):
    again = genre.generate(factuals, k=10, select="max_prob", seed=0)
    np.testing.assert_array_equal(again, recourses["max_prob"])
    other = genre.sample(factuals, k=10, temperature=1.0, seed=1)
    assert not np.array_equal(other, genre.sample(factuals, k=10, temperature=1.0, seed=0))


def test_incremental_decoding_equals_rerunning_the_prefix(genre, factuals):
    fast = genre.sample(factuals, k=5, temperature=1.0, seed=3, incremental=True)
    slow = genre.sample(factuals, k=5, temperature=1.0, seed=3, incremental=False)
    np.testing.assert_array_equal(fast, slow)


def test_shared_prefixes_and_threads_do_not_change_a_sample(genre, compas_setup):
    """Decoding each distinct prefix once, and splitting the batch across threads, are speed-ups only: the
    samples equal the reference path's (every row re-runs its whole prefix) bit for bit, at a temperature
    where the k samples share some prefixes and split others."""
    factuals = compas_setup.pick_factuals(200, seed=1)
    reference = genre.sample(factuals, k=6, temperature=0.5, seed=2, incremental=False, threads=1)
    for threads in (1, 2):
        fast = genre.sample(factuals, k=6, temperature=0.5, seed=2, threads=threads)
        assert fast.tobytes() == reference.tobytes()
    # One factual at a time (no sharing below 8 factuals) gives the same rows as the batch.
    rows = np.arange(200, dtype=np.uint64)
    alone = np.concatenate([genre.sample(factuals[i : i + 1], k=6, temperature=0.5, seed=2, row_seeds=rows[i : i + 1])
                            for i in range(3)])
    batch = genre.sample(factuals, k=6, temperature=0.5, seed=2, row_seeds=rows)
    assert alone.tobytes() == batch[:3].tobytes()


def test_a_forked_child_decodes_with_threads_of_its_own(genre, compas_setup):
    """A forked process inherits the decoding pool but not its threads; it must not wait on them."""
    import multiprocessing as mp

    factuals = compas_setup.pick_factuals(200, seed=1)
    expected = genre.sample(factuals, k=4, temperature=0.5, seed=2, threads=2)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_sample_in_child, args=(genre, factuals, send))
    child.start()
    assert recv.poll(120), "the forked child did not answer within 120 s"
    got = recv.recv()
    child.join(10)
    assert got.tobytes() == expected.tobytes()


def _sample_in_child(genre, factuals, conn) -> None:
    import torch

    torch.set_num_threads(1)
    conn.send(genre.sample(factuals, k=4, temperature=0.5, seed=2, threads=2))
    conn.close()


@pytest.mark.parametrize("rule", ["max_prob", "min_cost"])
def test_immutable_features_never_change(compas_setup, factuals, recourses, rule):
    immutable = compas_setup.spec.mask("immutable")
    np.testing.assert_array_equal(recourses[rule][:, immutable], factuals[:, immutable])


def test_categorical_values_stay_in_their_domain(genre, compas_setup, factuals):
    # High temperature spreads samples over every allowed bin, the hardest case for the mask.
    samples = genre.sample(factuals, k=20, temperature=5.0, seed=0).reshape(-1, factuals.shape[1])
    assert not categorical_out_of_domain(samples, compas_setup.encoder).any()


def test_continuous_values_stay_in_the_observed_range_and_integers_whole(genre, compas_setup, factuals):
    samples = genre.sample(factuals, k=20, temperature=5.0, seed=0).reshape(-1, factuals.shape[1])
    X = compas_setup.X_train
    assert (samples >= X.min(0) - 1e-6).all() and (samples <= X.max(0) + 1e-6).all()
    raw = compas_setup.encoder.inverse_transform(samples)
    enc = compas_setup.encoder
    for j, f in enumerate(compas_setup.spec.features):
        if f in compas_setup.spec.integer:
            value = samples[:, j].astype(np.float64) * enc.range_[j] + enc.min_[j]
            np.testing.assert_allclose(value, np.rint(value), atol=1e-3)
    assert len(raw) == len(samples)


def test_monotone_features_move_only_the_permitted_way(genre, compas_setup, factuals):
    age = compas_setup.spec.features.index("age")  # compas: increase-only
    samples = genre.sample(factuals, k=20, temperature=5.0, seed=0, monotone=True)
    assert (samples[:, :, age] >= factuals[:, None, age] - 1e-7).all()
    free = genre.sample(factuals, k=20, temperature=5.0, seed=0, monotone=False)
    assert (free[:, :, age] < factuals[:, None, age] - 1e-3).any()  # the constraint is what stops it


def test_min_cost_is_cheaper_and_still_accepted_by_h(genre, factuals, recourses):
    cost = {r: np.abs(x - factuals).sum(1) for r, x in recourses.items()}
    assert cost["min_cost"].mean() <= cost["max_prob"].mean()
    h = genre.classifier.predict_proba(recourses["min_cost"])
    h_max = genre.classifier.predict_proba(recourses["max_prob"])
    # Where max_prob found a sample h accepts, min_cost's choice is accepted too.
    assert (h[h_max > 0.5] > 0.5).all()


def test_knn_vote_counts_favourable_labels_among_the_nearest_rows():
    X_ref = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [1.0, 1.0], [0.9, 1.0], [1.0, 0.9]], dtype=np.float32)
    y_ref = np.array([1, 1, 0, 0, 0, 1])
    vote = knn_vote(np.array([[0.0, 0.0], [1.0, 1.0]]), X_ref, y_ref, neighbours=3)
    np.testing.assert_allclose(vote, [2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="reference"):
        knn_vote(X_ref, X_ref[:2], y_ref[:2], neighbours=3)


def test_knn_vote_picks_the_sample_the_neighbours_back(genre, compas_setup, factuals):
    s = compas_setup
    chosen = genre.generate(factuals, k=10, select="knn_vote", seed=0, reference=(s.X_train, s.h_labels))
    samples = genre.sample(factuals, k=10, seed=0)
    n, k = samples.shape[:2]
    score = (genre.classifier.predict_proba(samples.reshape(n * k, -1))
             + knn_vote(samples.reshape(n * k, -1), s.X_train, s.h_labels)).reshape(n, k)
    np.testing.assert_array_equal(chosen, samples[np.arange(n), score.argmax(1)])
    # The vote must matter: on 100 factuals it overrules h's favourite somewhere.
    assert not np.array_equal(chosen, genre.generate(factuals, k=10, select="max_prob", seed=0))
    with pytest.raises(ValueError, match="reference"):
        genre.generate(factuals, select="knn_vote")


def test_robust_rules_follow_both_opinions(genre, compas_setup, factuals):
    s = compas_setup
    g = s.second_opinion  # gradient-boosted trees on h's training rows and labels
    samples = genre.sample(factuals, k=10, seed=0)
    n, k = samples.shape[:2]
    flat = samples.reshape(n * k, -1)
    h, other = genre.classifier.predict_proba(flat).reshape(n, k), g.predict_proba(flat).reshape(n, k)
    # robust: among the samples h accepts (all when none), the one whose weaker opinion is the strongest.
    robust = genre.generate(factuals, k=10, select="robust", seed=0, second=g)
    weaker = np.minimum(h, other)
    for i in range(n):
        pool = np.flatnonzero(h[i] > 0.5) if (h[i] > 0.5).any() else np.arange(k)
        np.testing.assert_array_equal(robust[i], samples[i, pool[weaker[i, pool].argmax()]])
    accepted_somewhere = (h > 0.5).any(1)
    assert (genre.classifier.predict_proba(robust)[accepted_somewhere] > 0.5).all()
    # robust_min_cost: the cheapest sample both back (h > 0.5, g > the margin), where there is one.
    cheap = genre.generate(factuals, k=10, select="robust_min_cost", seed=0, second=g)
    both = (h > 0.5) & (other > SECOND_OPINION_MARGIN)
    assert both.any(1).mean() > 0.5  # the check below has rows to bite on
    cost = np.abs(samples - factuals[:, None]).sum(-1)
    best = np.where(both, cost, np.inf).min(1)
    has = both.any(1)
    np.testing.assert_allclose(np.abs(cheap - factuals).sum(1)[has], best[has], rtol=1e-6)
    np.testing.assert_array_equal(cheap[~has], robust[~has])
    with pytest.raises(ValueError, match="second"):
        genre.generate(factuals, select="robust")


def test_second_opinion_learns_the_labels_and_refuses_one_class():
    rng = np.random.default_rng(0)
    X = rng.random((400, 3)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    g = SecondOpinion().fit(X, y)
    assert ((g.predict_proba(X) > 0.5) == y).mean() > 0.95
    with pytest.raises(ValueError, match="both labels"):
        SecondOpinion().fit(X, np.ones(400, dtype=int))
    with pytest.raises(RuntimeError, match="not fitted"):
        SecondOpinion().predict_proba(X)


@pytest.mark.slow  # trains a generator (~20 s of CPU, over a minute of wall time on the shared machine)
def test_recourse_is_valid_under_h(genre, recourses):
    assert (genre.classifier.predict_proba(recourses["max_prob"]) > 0.5).mean() >= 0.9


def test_save_and_load_give_the_same_recourses(genre, factuals, recourses, tmp_path):
    genre.save(tmp_path / "g")
    again = GenRe.load(tmp_path / "g")
    np.testing.assert_array_equal(again.generate(factuals, k=10, seed=0), recourses["max_prob"])
    with pytest.raises(FileNotFoundError, match="missing"):
        GenRe.load(tmp_path / "nowhere")


def test_a_saved_second_opinion_comes_back_and_serves_the_robust_rules(genre, compas_setup, factuals, tmp_path):
    g = compas_setup.second_opinion
    expected = genre.generate(factuals, k=10, select="robust_min_cost", seed=0, second=g)
    genre.with_second_opinion(g).save(tmp_path / "with")
    again = GenRe.load(tmp_path / "with")
    assert again.second_opinion is not None
    np.testing.assert_array_equal(again.generate(factuals, k=10, select="robust_min_cost", seed=0), expected)
    # Saving without one into the same folder removes the old file: no stale opinion beside new weights.
    genre.save(tmp_path / "with")
    assert GenRe.load(tmp_path / "with").second_opinion is None


def test_bad_arguments_are_refused(genre, factuals):
    with pytest.raises(ValueError, match="select"):
        genre.generate(factuals, select="best")
    with pytest.raises(ValueError, match="temperature"):
        genre.generate(factuals, temperature=0.0)
    with pytest.raises(ValueError, match="encoded rows"):
        genre.generate(factuals[:, :3])


# ---- the decoding ablation and sparsify ------------------------------------------------------------------
def test_default_decoding_is_the_projects(genre, factuals):
    from genre.core.sampler import Decoding

    same = genre.with_decoding(Decoding())
    np.testing.assert_array_equal(same.sample(factuals, k=5, temperature=1.0, seed=2),
                                  genre.sample(factuals, k=5, temperature=1.0, seed=2))


def test_paper_decoding_draws_bin_centres_and_rounds_categories(compas_setup, genre, factuals):
    from genre.core.sampler import Decoding

    paper = genre.with_decoding(Decoding.paper())
    out = paper.sample(factuals, k=5, temperature=1.0, seed=2).reshape(-1, compas_setup.d)
    levels = compas_setup.encoder.category_levels()
    centres = np.linspace(0, 1, genre.generator.config.n_bins)
    immutable = compas_setup.spec.mask("immutable")
    for j in range(compas_setup.d):
        if immutable[j]:
            continue
        allowed = levels[j] if j in levels else centres
        gap = np.abs(out[:, j, None] - allowed[None, :]).min(1)
        assert gap.max() < 1e-6, compas_setup.spec.features[j]
    # The project's decoding instead keeps the factual's own value when its own bin is drawn.
    ours = genre.sample(factuals, k=5, temperature=1.0, seed=2)
    assert (ours == factuals[:, None, :]).mean() > (out.reshape(ours.shape) == factuals[:, None, :]).mean()


def test_sparsify_only_undoes_changes_and_keeps_h_above_the_margin(compas_setup, genre, factuals, recourses):
    chosen = recourses["max_prob"]
    sparse = genre.sparsify(factuals, chosen, margin=0.6)
    h_before = compas_setup.classifier.predict_proba(chosen)
    h_after = compas_setup.classifier.predict_proba(sparse)
    live = h_before > 0.6
    assert (h_after[live] > 0.6).all()
    np.testing.assert_array_equal(sparse[~live], chosen[~live])  # rows below the margin are left alone
    moved = sparse != chosen
    np.testing.assert_array_equal(sparse[moved], np.broadcast_to(factuals, sparse.shape)[moved])  # only back
    assert np.abs(sparse - factuals).sum(1).mean() < np.abs(chosen - factuals).sum(1).mean()


def test_sparsify_with_a_guard_only_undoes_changes_the_guard_accepts(genre, factuals, recourses):
    class Refuses:
        def is_inlier(self, X):
            return np.zeros(len(X), dtype=bool)

    chosen = recourses["max_prob"]
    np.testing.assert_array_equal(genre.sparsify(factuals, chosen, margin=0.6, guard=Refuses()), chosen)

    class Accepts:
        def is_inlier(self, X):
            return np.ones(len(X), dtype=bool)

    np.testing.assert_array_equal(genre.sparsify(factuals, chosen, margin=0.6, guard=Accepts()),
                                  genre.sparsify(factuals, chosen, margin=0.6))


def test_with_keep_own_switches_only_that_decoding_setting(genre):
    assert genre.with_keep_own(genre.decoding.keep_own) is genre
    other = genre.with_keep_own(not genre.decoding.keep_own)
    assert other.decoding.keep_own is (not genre.decoding.keep_own)
    assert replace(other.decoding, keep_own=genre.decoding.keep_own) == genre.decoding
    assert other.generator is genre.generator and other.classifier is genre.classifier
