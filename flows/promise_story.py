"""`make run`'s step 3, recourse is a promise (issue 13): a challenger that would break it is blocked, one
trained to keep it is promoted. See `flows/main.py` and docs/promise.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genre.core.datasets import DatasetSpec, split_xy


# How far the applicants in the story's performative batch went: three quarters of each recommended change.
ACTED_SHARE = 0.75


def acted_on_recourse(spec: DatasetSpec, train: pd.DataFrame, settings, size: int,
                      share: float = ACTED_SHARE) -> pd.DataFrame:
    """Up to `size` training rows the champion rejects (seeded draw), moved `share` of the way to the recourse
    the champion's generator gives them (only recourse the champion accepts, as it would be issued; in the
    encoded space, then written in the data's units, so a recommended category is taken), with their own
    labels."""
    from flows.batches import acted_on_recourse_batch
    from tasks.serving.batch import load_champion_pair

    pair = load_champion_pair(spec.name)
    X_raw, _ = split_xy(train, spec)
    X = pair.encoder.transform(X_raw)
    rejected = np.flatnonzero(pair.classifier.predict_proba(X) <= 0.5)
    rng = np.random.default_rng(settings.training.seed)
    rows = np.sort(rng.choice(rejected, size=min(size, len(rejected)), replace=False))
    t = settings.training
    moved = pair.genre.generate(X[rows], k=t.k, temperature=t.temperature, select=t.select, seed=t.seed)
    valid = pair.classifier.predict_proba(pair.encoder.snap_units(moved)) > 0.5
    partly = pair.encoder.snap_units(X[rows] + share * (moved - X[rows]))
    batch = acted_on_recourse_batch(train.iloc[rows[valid]], pair.encoder.to_units(partly[valid]), spec)
    # Two people sent to the same profile are one row to the data contract's duplicate check: keep one.
    return batch.drop_duplicates(ignore_index=True)


def keep_the_promise(spec: DatasetSpec, train: pd.DataFrame, incoming: Path, settings, config: str | None,
                     size: int) -> dict:
    from flows.ingest import ingest
    from flows.main import _drop
    from flows.monitor import monitor
    from flows.retrain import retrain

    batch = acted_on_recourse(spec, train, settings, size)
    print(f"\n=== 3. recourse is a promise: {len(batch)} rejected applicants made {ACTED_SHARE:.0%} of their "
          f"recourse's changes; their own outcomes arrive ===", flush=True)
    _drop(batch, incoming, "batch-003-acted-on-recourse.csv")
    out: dict = {"ingest_promise": ingest(dataset=spec.name, config=config)}
    out["promise_broken"] = retrain(dataset=spec.name, config=config)
    print("--- a second challenger, trained with the issued recourses as weighted favourable rows ---", flush=True)
    out["promise_kept"] = retrain(dataset=spec.name, config=config, keep_promise=True)
    kept = out["promise_kept"]
    out["monitor_promise"] = monitor(version=kept["classifier_version"]) if kept["promoted"] else None
    return out


def _gate(result: dict) -> dict | None:
    return next((g for g in result["gates"] if g["name"] == "commitment"), None)


def promise_lines(out: dict) -> list[str]:
    """The summary's lines for step 3."""
    if "promise_broken" not in out:
        return []
    lines = []
    for label, r in (("challenger on the acted-on-recourse batch", out["promise_broken"]),
                     ("challenger that keeps the promise (--keep-promise)", out["promise_kept"])):
        g, fig = _gate(r), r["figures"]
        failed = [x["name"] for x in r["gates"] if not x["passed"]]
        lines.append(f"{label}: classifier v{r['classifier_version']} + generator v{r['generator_version']} -> "
                     f"{'PROMOTED to champion' if r['promoted'] else 'BLOCKED, stays challenger'}"
                     + (f" (failed: {', '.join(failed)})" if failed else ""))
        if "validity" in fig:
            lines.append(f"  h: AUC {fig['auc']:.3f}; recourse validity {fig['validity']:.3f}, plausibility "
                         f"{fig['plausibility']:.3f}")
        verdict = "promise kept" if g["passed"] else f"{g['voided']} people would have been affected"
        lines.append(f"  commitment gate: {g['voided']} of {g['rescored']} issued recourses would be refused "
                     f"({g['figure']:.1%} {'<=' if g['passed'] else '>'} {g['threshold']:.1%}): {verdict}")
        if not g["passed"]:
            ids = g["affected_ids"]
            lines.append(f"  affected ledger ids: {', '.join(map(str, ids[:12]))}{' ...' if len(ids) > 12 else ''}; "
                         f"report {r.get('commitment_report')}")
    mon = out.get("monitor_promise") or {}
    if mon:
        lines.append(f"  validity over time (issuing version: share still valid under v{mon['classifier_version']}): "
                     + ", ".join(f"v{v}: {x['still_valid']:.1%} of {x['n']}" for v, x in mon["ledger_validity"].items()))
        lines.append(f"    {mon.get('plot')}")
        files = (mon.get("validity_over_time") or {}).get("files") or {}
        if files.get("html"):
            lines.append(f"    {files['html']}")
    return lines
