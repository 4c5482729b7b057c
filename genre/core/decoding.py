"""GenRe's sampling loop: k samples per factual, drawn one feature at a time from the generator.

Three things make the incremental loop fast without changing a single sample:
- **each distinct prefix is decoded once.** The k samples of a factual start from the same prefix (the
  label) and, at the recipes' low temperatures, mostly draw the same bins, so they share most of their
  prefixes (compas at T = 0.05: 2,444 distinct prefixes among 10,000 rows after the first draw). The
  decoder runs on one row per distinct prefix; each row's draw then reads its prefix's distribution.
  A prefix splits when its rows draw different bins: one branch keeps its cached keys and values in
  place, the others get a copy.
- **a copied feature needs no logits.** At an immutable feature's step only the keys and values of the
  token fed at that step are needed; the last layer's attention, MLP and the head are skipped.
- **both cores.** A batch is split into halves, decoded in two threads (torch releases the GIL inside its
  kernels), each on one intra-op thread, so that the per-row arithmetic is that of one thread.

A single query (one factual) can also run as one compiled graph of `decode_unshared`, the loop below 8
factuals (`genre.core.compiled`, opt-in, checked against this path before use).

Why the samples stay bit-identical: every operation of the step is row-wise (a row's result depends on its
own inputs only; checked for the matmul kernels down to 7 rows, which is why sharing starts at 8 factuals),
the cross-attention of a distinct prefix is computed at the position one of its rows had in the unshared
batch (`genre.core.generator.Shared`), and the random numbers are drawn up front in the order the unshared
loop drew them. Tests compare against the re-run-prefix path; the README says how it was checked on the
recipes' generators.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch

from genre.core import bins
from genre.core.generator import Shared

# Below this many factuals in a batch the prefixes are not shared: U < 7 distinct rows would take other
# matmul kernels (different rounding) than the unshared batch took.
SHARE_FROM = 8
# A batch is split across threads only when each part keeps at least this many factuals: below it the
# hand-off costs more than the second core gives.
SPLIT_FROM = 64

_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (the process that made it, the pool)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def draw_uniforms(gen: torch.Generator, rows: int, d: int) -> torch.Tensor:
    """(rows, d) uniforms, drawn step by step as the sequential loop drew them (one (rows, 1) draw per step)."""
    return torch.cat([torch.rand(rows, 1, generator=gen) for _ in range(d)], dim=1)


def decode(genre, factuals: torch.Tensor, k: int, temperature: float, u: torch.Tensor, *, incremental: bool = True,
           monotone: bool = False, threads: int = 1) -> torch.Tensor:
    """(m, d) factuals, (m k, d) uniforms -> (m k, d) samples; factual i's are rows i*k .. i*k + k - 1."""
    m = len(factuals)
    parts = max(1, min(threads, m // SPLIT_FROM)) if incremental else 1
    if parts == 1:
        return _decode(genre, factuals, k, temperature, u, incremental, monotone)
    bounds = [m * i // parts for i in range(parts + 1)]
    jobs = [(factuals[a:b], u[a * k : b * k]) for a, b in zip(bounds, bounds[1:])]
    pool = _pool(parts - 1)
    # The caller's thread decodes the first part itself; grad mode is per thread, so the workers set it.
    futures = [pool.submit(_decode_no_grad, genre, f, k, temperature, uu, monotone) for f, uu in jobs[1:]]
    first = _decode(genre, jobs[0][0], k, temperature, jobs[0][1], True, monotone)
    return torch.cat([first, *[f.result() for f in futures]])


def _pool(workers: int) -> ThreadPoolExecutor:
    """The decoding threads, made on first use. A forked child (the memory bench, a forking server) gets a
    pool of its own: it inherits the parent's pool object but not its threads, and would wait on them forever."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < workers:
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genre-decode"))
    return _POOL[1]


@torch.no_grad()
def _decode_no_grad(genre, factuals, k, temperature, u, monotone) -> torch.Tensor:
    return _decode(genre, factuals, k, temperature, u, True, monotone)


def _decode(genre, factuals: torch.Tensor, k: int, temperature: float, u: torch.Tensor, incremental: bool,
            monotone: bool) -> torch.Tensor:
    m = len(factuals)
    if incremental and m < SHARE_FROM:
        if genre.compiled is not None and m == 1:  # a single query through its compiled graph (genre.core.compiled)
            return genre.compiled(factuals, k, temperature, u, monotone)
        # A few factuals: Python's round trip per operation is most of the time, which a trace saves.
        return decode_unshared(genre, factuals, k, temperature, u, monotone, genre.generator.traced_step)
    model, d = genre.generator, genre.spec.d
    n_bins = model.config.n_bins
    # The encoder runs once per factual, not once per sample: its k samples share the memory.
    mem_kv = model.memory_kv(model.encode(factuals, factuals.new_zeros(m)))
    xf = factuals.repeat_interleave(k, dim=0)  # (B = m k, d)
    B = xf.shape[0]
    if incremental:  # one row per distinct prefix: at first, one per factual (every row starts with the label)
        group = torch.arange(m).repeat_interleave(k)  # (B,) each row's prefix
        slots = torch.arange(m) * k  # (U,) the row at whose position each prefix is computed
    else:  # the reference path re-runs the prefix on one memory copy per row
        group = slots = None
        mem_kv = [tuple(t.repeat_interleave(k, dim=0) for t in kv) for kv in mem_kv]
    scratch: dict = {}  # the cross-attention's work tensors, zeroed once per call
    token = 2 * xf.new_ones(B if slots is None else m) - 1  # the favourable label opens the decoder sequence
    if incremental:  # room for every row: a prefix that splits keeps its place and its new branches are appended
        store = model.empty_cache(B, xf)
    out = xf.new_empty(B, d)
    own = bins.nearest(xf, n_bins)  # (B, d) each factual value's nearest bin
    for t in range(d):
        drawn = not genre._immutable[t]
        if incremental:
            cache = [(keys[: len(slots)], values[: len(slots)]) for keys, values in store]
            shared = Shared(slots // k, slots % k, k, scratch)
            logits, cache = model.step(token, t, mem_kv, cache, shared=shared, logits=drawn)
        else:
            logits = model.decode(out[:, :t], xf.new_ones(B), mem_kv)[:, -1]
        if not drawn:
            out[:, t] = xf[:, t]  # copied, and the decoder is conditioned on the copy
        else:
            idx, out[:, t] = _draw(genre, logits, t, xf, own, u, temperature, monotone, group, slots)
            if group is not None and t < d - 1:
                before = len(slots)
                group, slots, source = _split_prefixes(group, before, idx, n_bins)
                for keys, values in store:  # new branches start from a copy of the prefix they split from
                    for buf in (keys, values):
                        rows = buf.view(B, -1)
                        rows[before : len(slots)] = rows.index_select(0, source)
        token = out[:, t] if slots is None else out[slots, t]
    return _round_categories(genre, out)


def decode_unshared(genre, factuals: torch.Tensor, k: int, temperature: float, u: torch.Tensor, monotone: bool,
                    step) -> torch.Tensor:
    """The incremental loop without prefix sharing, each step through `step` (`Generator.traced_step`, or
    `Generator.step` inside a compiled graph): a few factuals, where sharing would change the kernels."""
    model, d = genre.generator, genre.spec.d
    m = len(factuals)
    mem_kv = model.memory_kv(model.encode(factuals, factuals.new_zeros(m)))
    xf = factuals.repeat_interleave(k, dim=0)
    cache = model.empty_cache(len(xf), xf)
    own = bins.nearest(xf, model.config.n_bins)
    out = xf.new_empty(xf.shape)
    token = 2 * xf.new_ones(len(xf)) - 1
    for t in range(d):
        drawn = not genre._immutable[t]
        logits, cache = step(token, t, mem_kv, cache, logits=drawn)
        if drawn:
            out[:, t] = _draw(genre, logits, t, xf, own, u, temperature, monotone, None, None)[1]
        else:
            out[:, t] = xf[:, t]
        token = out[:, t]
    return _round_categories(genre, out)


def _draw(genre, logits, t: int, xf, own, u, temperature: float, monotone: bool, group, slots):
    """Feature t's bins (B,) and values (B,) from its logits (one row per prefix when `group` maps rows to them)."""
    n_bins = genre._values.shape[1]
    own_value = xf[:, t] if slots is None else xf[slots, t]  # each logits row's factual value
    allowed = genre._allowed[t].expand(len(logits), -1)
    if monotone and (genre._increase[t] or genre._decrease[t]):
        allowed = allowed & genre._monotone_mask(own_value, t)
    cdf = (logits / temperature).masked_fill(~allowed, float("-inf")).softmax(-1).cumsum(-1)
    if group is not None:
        cdf = cdf.index_select(0, group)  # each row reads its prefix's distribution
    idx = torch.searchsorted(cdf, u[:, t : t + 1] * cdf[:, -1:]).clamp_max(n_bins - 1).squeeze(1)
    # A draw of the factual's own bin keeps its exact value: the bin grid alone would move
    # every feature by up to half a bin, a cost with no change in the applicant's situation.
    if genre.decoding.keep_own:
        value = torch.where(idx == own[:, t], xf[:, t], genre._values[t, idx])
    else:
        value = genre._values[t, idx]
    if monotone and genre._increase[t]:
        value = torch.maximum(value, xf[:, t])
    elif monotone and genre._decrease[t]:
        value = torch.minimum(value, xf[:, t])
    return idx, value


def _round_categories(genre, out: torch.Tensor) -> torch.Tensor:
    """The paper rounds categorical features to the nearest category once the sample is drawn."""
    if not genre.decoding.categorical_mask:
        for j, codes in genre._level_codes.items():
            if not genre._immutable[j]:
                out[:, j] = codes[(out[:, j, None] - codes[None, :]).abs().argmin(1)]
    return out


def _split_prefixes(group: torch.Tensor, prefixes: int, idx: torch.Tensor, n_bins: int):
    """Rows' prefixes after drawing bins idx -> (group (B,), slots (U',), source (U' - U,)).

    A row's value is a function of its prefix (which fixes the factual) and its bin, so (prefix, bin) names
    the new prefix. Each prefix's first branch keeps its number (and its cached keys and values); the others
    are numbered U, U + 1, ... and `source` says which prefix each of them copies its cache from. A prefix
    is computed at the place of its first row."""
    key = group * n_bins + idx
    uniq, inverse = torch.unique(key, return_inverse=True)  # sorted: a prefix's branches are consecutive
    parent = uniq // n_bins
    first = torch.ones_like(parent, dtype=torch.bool)
    first[1:] = parent[1:] != parent[:-1]
    number = torch.where(first, parent, prefixes - 1 + torch.cumsum(~first, 0))
    rows = torch.arange(len(key))
    first_row = torch.full((len(uniq),), len(key), dtype=rows.dtype).scatter_reduce_(0, inverse, rows, "amin")
    slots = torch.empty_like(first_row).index_copy_(0, number, first_row)
    return number.index_select(0, inverse), slots, parent[~first]
