"""GenRe's recourse sampler: k samples per factual from the generator, then one is selected.

Guarantees on every recourse (the paper's code has none of them):
- immutable features are copied from the factual (the decoder is also conditioned on the copy);
- a categorical feature decodes only to one of its categories (other bins are masked out);
- a continuous feature lands inside its observed training range, integer features on whole numbers;
- optionally (`monotone=True`), increase-only / decrease-only features never move the wrong way.

Decoding is incremental: the encoder runs once per factual, and each step feeds only the newest token
through the decoder, reusing the cached keys and values of the earlier ones. `incremental=False` re-runs
the whole prefix at every step instead (the paper's way); both draw the same random numbers, so they
return the same samples.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import joblib
import numpy as np
import torch

from genre.core import bins, files, selection
from genre.core.classifier import Classifier, one_thread
from genre.core.decoding import decode, default_threads, draw_uniforms
from genre.core.encoding import MinMaxEncoder
from genre.core.generator import Generator

# robust_min_cost's default threshold on the second opinion; a tuned recipe (`genre tune`) sets its own.
SECOND_OPINION_MARGIN = 0.6
SECOND_OPINION_FILE = "second_opinion.joblib"
HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class Decoding:
    """How a drawn bin becomes a feature value. The defaults are the project's; `Decoding.paper()` is the
    authors' sampler (bin centres, no range or category masks, categorical features rounded afterwards).

    observed_values : a bin decodes to a value the training data holds (integers snapped to whole numbers)
        instead of the bin's centre.
    keep_own : a draw of the factual's own bin keeps the factual's exact value.
    clamp : only bins inside the feature's observed training range may be drawn; values clipped to it.
    categorical_mask : a categorical feature may only draw its categories' bins; without it, any bin is
        drawn and the value is rounded to the nearest category once the sample is complete (the paper).
    """

    observed_values: bool = True
    keep_own: bool = True
    clamp: bool = True
    categorical_mask: bool = True

    @classmethod
    def paper(cls) -> "Decoding":
        return cls(observed_values=False, keep_own=False, clamp=False, categorical_mask=False)


class GenRe:
    """Generative recourse: `GenRe(generator, encoder, classifier, support=...).generate(factuals)`.

    Parameters
    ----------
    generator : a trained `Generator` (see `genre.core.train_generator.train_generator`).
    encoder : the fitted `MinMaxEncoder` the generator and classifier work in; its spec gives the
        categorical, immutable, integer and monotone features.
    classifier : h, used to select among the k samples.
    support : `observed_support(X_train, encoder, n_bins)`: each feature's observed range and the value
        each bin decodes to. Without it, the range is [0, 1] and a bin decodes to its centre.
    second_opinion : optional second classifier fit on h's training data (`genre.core.classifier.SecondOpinion`),
        used by the robust selection rules when `generate` is given none; saved and loaded with the rest.
    history : optional record of the generator's training (`train_generator` fills it: per-epoch losses, the
        best epoch, pair counts, seconds); saved and loaded with the rest.
    """

    def __init__(self, generator: Generator, encoder: MinMaxEncoder, classifier: Classifier, *, support: dict | None = None,
                 second_opinion=None, decoding: Decoding = Decoding(), history: dict | None = None):
        self.generator = generator.eval()
        self.compiled = None  # a `genre.core.compiled.CompiledDecoder` once `compile_single_queries` ran
        self.history = history
        self.decoding = decoding
        self.encoder = encoder
        self.classifier = classifier
        self.second_opinion = second_opinion
        self.spec = encoder.spec
        d, n_bins = generator.config.d, generator.config.n_bins
        if d != self.spec.d:
            raise ValueError(f"generator has d={d} features but the encoder's spec '{self.spec.name}' has {self.spec.d}")
        if support is None:
            grid = np.tile(bins.centres(n_bins), (d, 1)).tolist()
            support = {"low": [0.0] * d, "high": [1.0] * d, "bin_values": grid}
        self.support = {k: np.asarray(v, dtype=np.float64) for k, v in support.items()}
        if self.support["bin_values"].shape != (d, n_bins):
            raise ValueError(f"support['bin_values'] must be ({d}, {n_bins}), got {self.support['bin_values'].shape}")
        self._build_tables(n_bins)

    def _build_tables(self, n_bins: int) -> None:
        """Per feature: which bins may be drawn and the encoded value each bin decodes to (see `Decoding`)."""
        dec = self.decoding
        grid, half = bins.centres(n_bins), bins.half_width(n_bins)
        low, high = self.support["low"], self.support["high"]
        allowed = np.ones((self.spec.d, n_bins), dtype=bool)
        values = self.support["bin_values"].copy() if dec.observed_values else np.tile(grid, (self.spec.d, 1))
        levels = self.encoder.category_levels()
        for j in range(self.spec.d):
            if j in levels and dec.categorical_mask:
                # Each category owns the bin nearest its code and decodes to the code exactly.
                nearest = np.abs(grid[None, :] - levels[j][:, None]).argmin(1)
                allowed[j] = False
                allowed[j, nearest] = True
                values[j, nearest] = levels[j]
            elif dec.clamp and j not in levels:
                allowed[j] = (grid >= low[j] - half) & (grid <= high[j] + half)
        if dec.clamp:
            values = np.clip(values, low[:, None], high[:, None])
        if dec.observed_values:
            values = _snap_integers(values, self.encoder)
        self._allowed = torch.as_tensor(allowed)
        self._values = torch.as_tensor(values, dtype=torch.float32)
        self._level_codes = {j: torch.as_tensor(codes, dtype=torch.float32) for j, codes in levels.items()}
        # Python bools, not numpy: the decoding loop branches on them, also inside a compiled graph.
        self._immutable, self._increase, self._decrease = (
            tuple(bool(v) for v in self.spec.mask(kind)) for kind in ("immutable", "increase_only", "decrease_only"))

    def compile_single_queries(self, k: int, temperature: float, monotone: bool = False) -> bool:
        """From now on, decode a call with one factual at this (k, temperature, monotone) through a compiled graph
        (`genre.core.compiled`): the same samples, a few times faster. Compiles and checks it now; False when
        it fell back to the eager path (the log says why). The `with_*` copies decode eagerly again."""
        from genre.core.compiled import CompiledDecoder

        if self.compiled is None:
            self.compiled = CompiledDecoder(self)
        return self.compiled.warm_up(k, temperature, monotone)

    def with_decoding(self, decoding: Decoding) -> "GenRe":
        """The same models with another `Decoding` (for ablations); shares the generator and classifier."""
        return self._with(decoding=decoding)

    def with_keep_own(self, keep_own: bool) -> "GenRe":
        """This GenRe with `Decoding.keep_own` set (itself when it already is): a recipe's sampling setting."""
        return self if self.decoding.keep_own == keep_own else self.with_decoding(replace(self.decoding, keep_own=keep_own))

    def with_second_opinion(self, second_opinion) -> "GenRe":
        """The same models with this second opinion (None: without one); shares the generator and classifier."""
        return self._with(second_opinion=second_opinion)

    def _with(self, **changes) -> "GenRe":
        parts = {"support": dict(self.support), "second_opinion": self.second_opinion, "decoding": self.decoding,
                 "history": self.history}
        return GenRe(self.generator, self.encoder, self.classifier, **(parts | changes))

    # ---- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        factuals: np.ndarray,
        k: int = 10,
        temperature: float = 0.1,
        seed: int = 0,
        *,
        incremental: bool = True,
        monotone: bool = False,
        batch_size: int = 8192,
        row_seeds: np.ndarray | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """(n, d) encoded factuals -> (n, k, d) float32 samples (before any selection).

        `row_seeds` (n,) ints: factual i's random numbers come from (seed, row_seeds[i]) alone, so its
        samples do not depend on which other factuals share the call (serving uses a hash of the row).
        `threads`: how many threads decode a large batch (None: every core this process may use); the
        samples do not depend on it.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        xf = torch.as_tensor(np.asarray(factuals, dtype=np.float32))
        if xf.ndim != 2 or xf.shape[1] != self.spec.d:
            raise ValueError(f"factuals must be (n, {self.spec.d}) encoded rows, got shape {tuple(xf.shape)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        gen = torch.Generator().manual_seed(seed)
        draws = None if row_seeds is None else _row_draws(seed, row_seeds, k, self.spec.d)
        per_batch = max(1, batch_size // k)  # factuals per batch: batch_size counts sample rows
        threads = default_threads() if threads is None else max(1, int(threads))
        out = []
        with one_thread():  # per thread: the decoding threads split the batch instead (see genre.core.decoding)
            for s in range(0, len(xf), per_batch):
                chunk = xf[s : s + per_batch]
                # Drawn before decoding, in the order the step-by-step loop drew them.
                u = draw_uniforms(gen, len(chunk) * k, self.spec.d) if draws is None else draws[s * k : (s + per_batch) * k]
                out.append(decode(self, chunk, k, temperature, u, incremental=incremental, monotone=monotone,
                                  threads=threads))
        samples = torch.cat(out) if out else xf.new_empty(0, self.spec.d)
        return samples.view(len(xf), k, self.spec.d).numpy()

    def _monotone_mask(self, factual: torch.Tensor, t: int) -> torch.Tensor:
        """(B, n_bins): bins on the permitted side of each factual's value (its own bin included)."""
        n_bins = self._values.shape[1]
        own = bins.nearest(factual, n_bins)[:, None]  # the factual's own bin
        cols = torch.arange(n_bins)[None, :]
        return cols >= own if self._increase[t] else cols <= own

    # ---- selection -----------------------------------------------------------------------------
    # One intra-op thread throughout: flipping torch's thread count between sampling and selection makes its
    # thread pool start again, which cost 5-8 ms a call under load (the decoding threads use both cores).
    @one_thread()
    def generate(
        self,
        factuals: np.ndarray,
        k: int = 10,
        temperature: float = 0.1,
        select: str = "max_prob",
        seed: int = 0,
        *,
        incremental: bool = True,
        monotone: bool = False,
        batch_size: int = 8192,
        row_seeds: np.ndarray | None = None,
        reference: tuple[np.ndarray, np.ndarray] | None = None,
        second=None,
        margin: float = SECOND_OPINION_MARGIN,
        sparsify: bool = False,
        guard=None,
        threads: int | None = None,
    ) -> np.ndarray:
        """One recourse per factual: (n, d) encoded factuals -> (n, d) float32 encoded recourses.

        k samples per factual are drawn at `temperature` (it divides the logits), then
        `select="max_prob"` keeps the sample h likes best (the paper's rule) and `select="min_cost"` keeps
        the cheapest sample with h(x+) > 0.5, falling back to the max_prob choice when none is.
        `select="knn_vote"` (new, beyond the paper) keeps the sample with the highest h(x+) + v(x+), where
        v is the share of favourable labels among its `selection.VOTE_NEIGHBOURS` nearest rows (L1, encoded) of
        `reference = (X_train, y_train)`, the encoded rows and labels h was trained on: a second opinion
        from the data where h's boundary is wrong.
        The robust rules (new) also ask `second`, another classifier fit on h's training data (anything with
        `predict_proba(encoded rows) -> (n,) P(y = 1)`, e.g. `genre.core.classifier.SecondOpinion`):
        `select="robust"` keeps, among the samples h accepts (all k when it accepts none), the one with the
        highest min(h(x+), g(x+)), the one both models are surest of; `select="robust_min_cost"` keeps the cheapest sample with h(x+) > 0.5 and g(x+) >
        `margin`, falling back to the robust choice when none is. Without `second`, the
        GenRe's own `second_opinion` is used. The same `seed` gives the same recourses.
        `sparsify=True` (new) then moves features of the chosen sample back to the factual's values, largest
        change first, as long as h(x+) > `margin` and, where a second opinion is at hand, g(x+) > `margin`
        (`sparsify`); with a `guard` (anything with `is_inlier(rows)`), only where it still calls the row an inlier.
        """
        second = second if second is not None else self.second_opinion
        evidence = selection.Evidence(reference=reference, second=second, margin=margin)
        rule = selection.check(select, evidence)
        samples = self.sample(factuals, k, temperature, seed, incremental=incremental, monotone=monotone,
                              batch_size=batch_size, row_seeds=row_seeds, threads=threads)
        n = samples.shape[0]
        if n == 0:
            return samples.reshape(0, self.spec.d)
        factuals = np.asarray(factuals, dtype=np.float32)
        prob = self.classifier.predict_proba(samples.reshape(n * k, -1)).reshape(n, k)
        chosen = samples[np.arange(n), rule(selection.Candidates(samples, factuals, prob), evidence)]
        if sparsify:
            chosen = self.sparsify(factuals, chosen, margin, second, guard)
        return chosen

    def sparsify(self, factuals: np.ndarray, recourses: np.ndarray, margin: float, second=None, guard=None) -> np.ndarray:
        """Undo changes that are not needed: for each feature, largest change first, put the factual's value
        back wherever h (and `second`, when given) still give the recourse more than `margin`. Rows h did not
        accept by `margin` to begin with are left as they are. Immutable features never differ, so never move.
        With a `guard` (e.g. LOF on h's favourable training rows), a change is only undone where the guard still
        calls the result an inlier, so that a cheaper recourse does not leave the data's manifold.
        """
        out = np.array(recourses, dtype=np.float32, copy=True)
        if len(out) == 0:
            return out

        def keeps(X: np.ndarray) -> np.ndarray:
            ok = self.classifier.predict_proba(X) > margin
            if second is not None:
                ok &= np.asarray(second.predict_proba(X)) > margin
            if guard is not None:
                ok &= np.asarray(guard.is_inlier(X), dtype=bool)
            return ok

        live = keeps(out)
        delta = np.abs(out - factuals)
        order = np.argsort(-delta, axis=1, kind="stable")  # each row's changes, largest first (delta is fixed)
        for rank in range(out.shape[1]):
            j = order[:, rank]  # each row's rank-th largest change
            rows = np.flatnonzero(live & (delta[np.arange(len(out)), j] > 0))
            if len(rows) == 0:
                continue
            trial = out[rows].copy()
            trial[np.arange(len(rows)), j[rows]] = factuals[rows, j[rows]]
            ok = keeps(trial)
            out[rows[ok]] = trial[ok]
        return out

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write generator.pt, classifier.pt, encoder.json, genre.json (and second_opinion.joblib, history.json
        when set)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.generator.save(directory / "generator.pt")
        self.classifier.save(directory / "classifier.pt")
        files.write_json(directory / "encoder.json", self.encoder.state_dict())
        if self.second_opinion is not None:
            with files.atomic_path(directory / SECOND_OPINION_FILE) as tmp:
                joblib.dump(self.second_opinion, tmp)
        else:
            (directory / SECOND_OPINION_FILE).unlink(missing_ok=True)  # never pair a stale one with new weights
        if self.history is not None:
            files.write_json(directory / HISTORY_FILE, self.history)
        # genre.json last: `load_or_train` takes a folder with it as complete.
        files.write_json(directory / "genre.json", {"support": {k: v.tolist() for k, v in self.support.items()}})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "GenRe":
        directory = Path(directory)
        missing = [f for f in ("generator.pt", "classifier.pt", "encoder.json", "genre.json") if not (directory / f).exists()]
        if missing:
            raise FileNotFoundError(f"{directory} is not a saved GenRe: missing {missing}")
        meta = json.loads((directory / "genre.json").read_text())
        encoder = MinMaxEncoder.from_state_dict(json.loads((directory / "encoder.json").read_text()))
        history = directory / HISTORY_FILE
        return cls(Generator.load(directory / "generator.pt"), encoder, Classifier.load(directory / "classifier.pt"),
                   support=meta["support"], second_opinion=load_second_opinion(directory),
                   history=json.loads(history.read_text()) if history.exists() else None)


def load_second_opinion(directory: str | Path):
    """The second opinion saved in a GenRe folder, or None when it has none."""
    path = Path(directory) / SECOND_OPINION_FILE
    return joblib.load(path) if path.exists() else None


def _row_draws(seed: int, row_seeds: np.ndarray, k: int, d: int) -> torch.Tensor:
    """(n k, d) uniform draws, factual i's k rows from its own stream (seed, row_seeds[i])."""
    row_seeds = np.asarray(row_seeds, dtype=np.uint64)
    draws = [np.random.default_rng([int(seed), int(r)]).random((k, d)) for r in row_seeds]
    return torch.as_tensor(np.concatenate(draws) if draws else np.zeros((0, d)), dtype=torch.float32)


def observed_support(X: np.ndarray, encoder: MinMaxEncoder, n_bins: int) -> dict:
    """Each feature's observed range in the encoded rows X, and the value each bin decodes to.

    A bin decodes to a value the training data holds: the commonest one among the values nearest that
    bin for integer features (so that e.g. a bin covering 0..15 days of stay decodes to the 0 or 1 most
    people have, not to the bin's centre), their median otherwise. Empty bins keep their centre.
    """
    X = np.asarray(X, dtype=np.float64)
    integer = encoder.spec.mask("integer")
    values = np.tile(bins.centres(n_bins), (X.shape[1], 1))
    nearest = bins.nearest(X, n_bins)
    for j in range(X.shape[1]):
        for b in np.unique(nearest[:, j]):
            members = X[nearest[:, j] == b, j]
            if integer[j]:
                uniq, counts = np.unique(members, return_counts=True)
                values[j, b] = uniq[counts.argmax()]
            else:
                values[j, b] = np.quantile(members, 0.5, method="lower")
    return {"low": X.min(0).tolist(), "high": X.max(0).tolist(), "bin_values": values.tolist()}


def _snap_integers(values: np.ndarray, encoder: MinMaxEncoder) -> np.ndarray:
    """(d, n_bins) encoded values with integer features moved to the nearest whole number."""
    integer = encoder.spec.mask("integer")
    raw = values * encoder.range_[:, None] + encoder.min_[:, None]
    raw[integer] = np.rint(raw[integer])
    return (raw - encoder.min_[:, None]) / encoder.range_[:, None]
