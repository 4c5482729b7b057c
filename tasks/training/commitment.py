"""Recourse is a promise (issue 13): the commitment gate a challenger h must pass before promotion, its
report and version tags, and the explicit override a person may give it.

The gate re-scores under the challenger every recourse issued in the last `commitment.window_days` days
(all of it by default) and fails when more than `commitment.max_voided` of it would no longer be accepted
(h(x+) <= 0.5). Its figure, threshold and the affected ledger ids go on the classifier version's tags
(`gate.commitment.*`) and into `commitment.json` / `commitment.md` in the run folder (logged with the run).

Override: a person sets the tags `commitment.override.by` and `commitment.override.reason` on the blocked
classifier version (MLflow UI or `python -m flows.override`); `flows.override` then promotes its pair if the
commitment gate is the only one it failed, records the decision in the ledger database
(`commitment_override`) and tags the version `commitment.override.applied_at`. The monitor shows it.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from genre.core.classifier import Classifier
from genre.core.encoding import MinMaxEncoder
from monitoring.inputs import ledger_still_valid
from tasks.settings import CommitmentConfig

GATE = "commitment"
OVERRIDE_BY, OVERRIDE_REASON = "commitment.override.by", "commitment.override.reason"
OVERRIDE_APPLIED = "commitment.override.applied_at"
TAG_IDS_MAX = 4000  # characters of affected ids on a tag; the full list is in the report


def window_start(config: CommitmentConfig, now: datetime | None = None) -> datetime | None:
    """The oldest issue time the gate re-scores (None: every recourse ever issued)."""
    if config.window_days is None:
        return None
    return (now or datetime.now(timezone.utc)) - timedelta(days=config.window_days)


def rescore(entries: pd.DataFrame, classifier: Classifier, encoder: MinMaxEncoder) -> pd.DataFrame:
    """Each ledger entry judged by a classifier: ledger_id, applicant_id, issued_by, still_valid."""
    judged = ledger_still_valid(entries, classifier, encoder)
    if entries.empty:
        return pd.DataFrame(columns=["ledger_id", "applicant_id", "issued_by", "still_valid"])
    return pd.DataFrame({"ledger_id": entries["id"].astype(int).to_numpy(),
                         "applicant_id": entries["applicant_id"].astype(str).to_numpy(),
                         "issued_by": judged["issued_by"].to_numpy(),
                         "still_valid": judged["still_valid"].to_numpy()})


def commitment_gate(judged: pd.DataFrame, config: CommitmentConfig) -> dict:
    """The gate row (name, figure = share voided, threshold = max_voided, passed, op '<=') with the counts
    and the affected ledger ids, from the window's entries as `rescore` judged them under the challenger.
    An empty window voids nothing and passes."""
    rescored = len(judged)
    voided = judged[judged["still_valid"] == 0] if rescored else judged
    share = len(voided) / rescored if rescored else 0.0
    window = "all recourse issued" if config.window_days is None else f"recourse issued in the last {config.window_days:g} days"
    by_version = ({str(v): {"rescored": int(len(g)), "voided": int((g["still_valid"] == 0).sum())}
                   for v, g in judged.groupby("issued_by")} if rescored else {})
    return {"name": GATE, "figure": round(float(share), 4), "threshold": round(float(config.max_voided), 4),
            "passed": bool(share <= config.max_voided), "op": "<=",
            "why": f"share of {window} ({rescored}) that this h would refuse",
            "rescored": int(rescored), "voided": int(len(voided)),
            "affected_ids": [int(i) for i in voided["ledger_id"]] if rescored else [],
            "window_days": config.window_days, "by_issuing_version": by_version}


def commitment_tags(gate: dict, report: str | None = None) -> dict[str, object]:
    """Tags beyond `promote.gate_tags`' figure/threshold/verdict: counts, the affected ids, the report."""
    ids = ",".join(map(str, gate["affected_ids"]))
    if len(ids) > TAG_IDS_MAX:
        cut = ids[:TAG_IDS_MAX].rsplit(",", 1)[0]
        ids = f"{cut} ... (+{len(gate['affected_ids']) - cut.count(',') - 1} more: see the report)"
    tags: dict[str, object] = {f"gate.{GATE}.rescored": gate["rescored"], f"gate.{GATE}.voided": gate["voided"],
                               f"gate.{GATE}.affected_ids": ids or "none",
                               f"gate.{GATE}.window_days": gate["window_days"] or "all"}
    if report:
        tags[f"gate.{GATE}.report"] = report
    return tags


def write_report(gate: dict, judged_entries: pd.DataFrame, run_dir: Path) -> str:
    """`commitment.json` (everything) and `commitment.md` (for people) in the run folder; the JSON's path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    affected = judged_entries[judged_entries["ledger_id"].isin(gate["affected_ids"])] if len(judged_entries) else judged_entries
    data = {**gate, "affected": affected.to_dict(orient="records")}
    path = run_dir / "commitment.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)
    verdict = "PASS" if gate["passed"] else "FAIL"
    lines = [f"# Commitment gate: {verdict}", "",
             f"{gate['voided']} of {gate['rescored']} issued recourses ({gate['figure']:.1%}) would no longer be "
             f"accepted by this classifier; the threshold is {gate['threshold']:.1%} ({gate['why']}).", ""]
    if gate["by_issuing_version"]:
        lines += ["| issued by classifier | re-scored | voided |", "|---|---|---|"]
        lines += [f"| v{v} | {c['rescored']} | {c['voided']} |" for v, c in gate["by_issuing_version"].items()]
    if len(affected):
        lines += ["", "## Affected ledger entries", "", "| ledger id | applicant | issued by |", "|---|---|---|"]
        lines += [f"| {r.ledger_id} | {r.applicant_id} | v{r.issued_by} |" for r in affected.itertuples()]
    if not gate["passed"]:
        lines += ["", "To promote it anyway, a person sets the registry tags `commitment.override.by` and "
                  "`commitment.override.reason` on this classifier version and runs `python -m flows.override "
                  "--version <v>` (docs/promise.md)."]
    (run_dir / "commitment.md").write_text("\n".join(lines) + "\n")
    return str(path)


def anchor_rows(entries: pd.DataFrame, spec, weight: float) -> pd.DataFrame:
    """Issued recourses as favourable training rows (applicant's units, the target set to the favourable
    label) with a `__weight__` column: what `retrain --keep-promise` adds to h's training."""
    if entries.empty:
        return pd.DataFrame(columns=[*spec.features, spec.target, "__weight__"])
    rows = pd.DataFrame(list(entries["recourse"]))[list(spec.features)]
    rows[spec.target] = spec.favourable_label
    rows["__weight__"] = float(weight)
    return rows


def override_of(tags: dict[str, str]) -> dict | None:
    """{by, reason} when a version carries a complete override (both tags non-empty), else None."""
    by, reason = (tags.get(OVERRIDE_BY) or "").strip(), (tags.get(OVERRIDE_REASON) or "").strip()
    return {"by": by, "reason": reason} if by and reason else None


def only_commitment_failed(tags: dict[str, str]) -> tuple[bool, list[str]]:
    """From a version's gate tags: (the commitment gate failed and every other one passed, the failed gates)."""
    failed = sorted(k.split(".")[1] for k, v in tags.items()
                    if k.startswith("gate.") and k.endswith(".verdict") and v == "fail")
    return failed == [GATE], failed

