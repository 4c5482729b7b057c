"""GenRe's selection rules: which of a factual's k samples becomes its recourse.

A rule is a function `(Candidates, Evidence) -> (n,)` index of the chosen sample per factual, registered by
name in `RULES` with what else it needs (`NEEDS`: training rows for `knn_vote`, a second opinion for the
robust rules). `GenRe.generate(select=name)` looks the rule up here; a new rule is one decorated function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

VOTE_NEIGHBOURS = 10  # chosen on held-out generator-validation sources of heloc and adult (README "## GenRe")


@dataclass(frozen=True)
class Candidates:
    """A batch's k samples per factual and h's opinion of each."""

    samples: np.ndarray  # (n, k, d) float32
    factuals: np.ndarray  # (n, d) float32
    prob: np.ndarray  # (n, k) h(x+)

    @property
    def flat(self) -> np.ndarray:
        return self.samples.reshape(-1, self.samples.shape[2])


@dataclass(frozen=True)
class Evidence:
    """What rules beyond h's opinion may consult."""

    reference: tuple[np.ndarray, np.ndarray] | None = None  # (X_train, y_train): the rows and labels h learnt from
    second: object | None = None  # a second classifier with predict_proba(encoded rows) -> (n,) P(y = 1)
    margin: float = 0.5  # how sure the second opinion must be (robust_min_cost)


Rule = Callable[[Candidates, Evidence], np.ndarray]
RULES: dict[str, Rule] = {}
NEEDS: dict[str, str | None] = {}


def rule(name: str, needs: str | None = None) -> Callable[[Rule], Rule]:
    """Register a selection rule under `name`; `needs` is "reference" or "second" when it uses them."""

    def register(fn: Rule) -> Rule:
        RULES[name], NEEDS[name] = fn, needs
        return fn

    return register


def check(select: str, evidence: Evidence) -> Rule:
    """The rule called `select`, once what it needs is at hand (ValueError naming what is missing)."""
    if select not in RULES:
        raise ValueError(f"select must be one of {tuple(RULES)}, got '{select}'")
    if NEEDS[select] == "reference" and evidence.reference is None:
        raise ValueError(f"select='{select}' needs reference=(X_train, y_train): the rows and labels h learnt from")
    if NEEDS[select] == "second" and evidence.second is None:
        raise ValueError(f"select='{select}' needs a second opinion: pass second=<a classifier fit on h's training "
                         "data>, e.g. genre.core.classifier.SecondOpinion().fit(X_train, y_train), or set it on the GenRe")
    return RULES[select]


@rule("max_prob")
def max_prob(c: Candidates, e: Evidence) -> np.ndarray:
    """The sample h likes best (the paper's rule)."""
    return c.prob.argmax(1)


@rule("min_cost")
def min_cost(c: Candidates, e: Evidence) -> np.ndarray:
    """The cheapest sample with h(x+) > 0.5, else the max_prob choice."""
    return _cheapest(c, c.prob > 0.5, fallback=c.prob.argmax(1))


@rule("knn_vote", needs="reference")
def knn_vote_rule(c: Candidates, e: Evidence) -> np.ndarray:
    """The highest h(x+) + the share of favourable labels among the sample's nearest training rows (new)."""
    return (c.prob + knn_vote(c.flat, *e.reference).reshape(c.prob.shape)).argmax(1)


@rule("robust", needs="second")
def robust(c: Candidates, e: Evidence) -> np.ndarray:
    """Among the samples h accepts (all k when it accepts none), the highest min(h(x+), g(x+)) (new)."""
    return _robust(c, e)[0].argmax(1)


@rule("robust_min_cost", needs="second")
def robust_min_cost(c: Candidates, e: Evidence) -> np.ndarray:
    """The cheapest sample with h(x+) > 0.5 and g(x+) > margin, else the robust choice (new)."""
    score, backed = _robust(c, e)
    return _cheapest(c, backed, fallback=score.argmax(1))


def _robust(c: Candidates, e: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """(score, backed): each sample's weaker opinion plus 1 where h accepts it (so a sample h accepts always
    beats one it rejects, and the recourse is valid under h whenever any sample is), and where both accept."""
    other = np.asarray(e.second.predict_proba(c.flat), dtype=np.float64).reshape(c.prob.shape)
    accepted = c.prob > 0.5
    return np.minimum(c.prob, other) + accepted, accepted & (other > e.margin)


def _cheapest(c: Candidates, ok: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per factual the cheapest (L1) sample where `ok`, or `fallback` where none is."""
    cost = np.where(ok, np.abs(c.samples - c.factuals[:, None, :]).sum(-1), np.inf)
    return np.where(np.isfinite(cost).any(1), cost.argmin(1), fallback)


def knn_vote(X: np.ndarray, X_ref: np.ndarray, y_ref: np.ndarray, neighbours: int = VOTE_NEIGHBOURS,
             chunk: int = 1024) -> np.ndarray:
    """(m,) share of favourable labels (y == 1) among each row's nearest `neighbours` reference rows (L1)."""
    X_ref = np.asarray(X_ref, dtype=np.float32)
    y_ref = np.asarray(y_ref)
    if len(X_ref) != len(y_ref) or len(X_ref) < neighbours:
        raise ValueError(f"reference needs >= {neighbours} rows and one label each, "
                         f"got {len(X_ref)} rows and {len(y_ref)} labels")
    ref, fav = torch.as_tensor(X_ref), torch.as_tensor(y_ref == 1, dtype=torch.float32)
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    out = [fav[torch.cdist(X[s : s + chunk], ref, p=1.0).topk(neighbours, largest=False).indices].mean(1)
           for s in range(0, len(X), chunk)]  # chunked: 1024 x 30k distances at a time on adult
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
