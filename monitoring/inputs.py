"""The frames the report builders read, computed from the champion models (no Prefect, no MLflow here).

- the fixed audit set: the same test rows for every version, so scores and recourse compare like for like;
- the champion generator's recourse on the audit rows the champion classifier rejects;
- the ledger's issued recourses judged again by the champion classifier.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from genre.core.classifier import Classifier, rejected_indices
from genre.core import files
from genre.core.datasets import DatasetSpec, coerce_frame, load_split, read_table
from genre.core.encoding import MinMaxEncoder
from genre.core.metrics import PlausibilityScorer, cost
from monitoring.reports import recourse_frame


def audit_set(spec: DatasetSpec, path: str | Path, *, n: int = 500, seed: int = 0) -> pd.DataFrame:
    """The fixed audit rows: drawn once from the test split (seeded) and kept in `path` from then on.

    Kept as a file so that the set stays the same even if the split or this sampling code changes later.
    """
    path = Path(path)
    if path.exists():
        return read_table(path, spec)
    test = load_split(spec, "test")
    audit = test.sample(n=min(n, len(test)), random_state=seed).reset_index(drop=True)
    with files.atomic_path(path) as tmp:
        audit.to_csv(tmp, index=False)
    return audit


def scores(classifier: Classifier, encoder: MinMaxEncoder, rows: pd.DataFrame) -> pd.DataFrame:
    """`score` = h(x) for each row, in the classifier's own encoding."""
    X = encoder.transform(rows[list(encoder.spec.features)])
    return pd.DataFrame({"score": classifier.predict_proba(X)})


def plausibility_scorer(classifier: Classifier, encoder: MinMaxEncoder, train: pd.DataFrame) -> PlausibilityScorer:
    """LOF fit on the training rows that are positive by label and by h.

    The paper fits on the oracle's positives; production has no oracle, so a point counts as positive when
    its label is favourable and the champion classifier agrees.
    """
    spec = encoder.spec
    X = encoder.transform(train[list(spec.features)])
    positive = (train[spec.target].to_numpy() == spec.favourable_label) & (classifier.predict_proba(X) > 0.5)
    if positive.sum() <= 5:
        raise ValueError(f"only {int(positive.sum())} positive training rows: too few to fit the plausibility LOF")
    return PlausibilityScorer().fit(X[positive])


def audit_recourse(
    genre,
    classifier: Classifier,
    encoder: MinMaxEncoder,
    audit: pd.DataFrame,
    plausibility: PlausibilityScorer,
    *,
    n: int = 200,
    k: int = 10,
    temperature: float = 0.1,
    select: str = "max_prob",
    seed: int = 0,
) -> pd.DataFrame:
    """Recourse for (up to n of) the audit rows h rejects: the recourse report's audit rows.

    Validity here is under the champion classifier h: production has no oracle to judge by.
    """
    X = encoder.transform(audit[list(encoder.spec.features)])
    rejected = rejected_indices(classifier.predict_proba(X))[:n]
    if len(rejected) == 0:
        raise ValueError("the champion classifier rejects none of the audit rows: no factual to give recourse to")
    factuals = X[rejected]
    recourses = genre.generate(factuals, k=k, temperature=temperature, select=select, seed=seed)
    return recourse_frame(
        cost=cost(factuals, recourses),
        valid=(classifier.predict_proba(recourses) > 0.5).astype(int),
        plausible=plausibility.is_inlier(recourses).astype(int),
    )


def ledger_still_valid(entries: pd.DataFrame, classifier: Classifier, encoder: MinMaxEncoder) -> pd.DataFrame:
    """Each issued recourse (applicant's units) judged by `classifier`: columns issued_by, still_valid.

    `entries` is `Ledger.entries(dataset)`. The recourse is re-encoded with the judging classifier's own
    encoder, since the issuing one may have scaled features differently.
    """
    if entries.empty:
        return pd.DataFrame({"issued_by": pd.Series(dtype=str), "still_valid": pd.Series(dtype=int)})
    spec = encoder.spec
    raw = pd.DataFrame(list(entries["recourse"]))
    missing = [f for f in spec.features if f not in raw.columns]
    if missing:
        raise ValueError(f"ledger recourses lack feature(s) {missing} of data set '{spec.name}'")
    typed = coerce_frame(raw[list(spec.features)].astype(str), spec, source="ledger recourse")
    accepted = classifier.predict_proba(encoder.transform(typed)) > 0.5
    return pd.DataFrame({"issued_by": entries["classifier_version"].astype(str).to_numpy(),
                         "still_valid": accepted.astype(int)})


def validity_by_version(judged: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """issuing version -> (number of recourses, share still valid)."""
    grouped = judged.groupby("issued_by")["still_valid"]
    return {str(v): (int(n), float(share)) for v, n, share in zip(grouped.size().index, grouped.size(), grouped.mean())}
