"""Write report snapshots as HTML and JSON, read their figures back by metric, and plot ledger validity."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from genre.core import files


def save_report(snapshot, out_dir: str | Path, name: str) -> dict[str, str]:
    """Write `<name>.html` and `<name>.json` under `out_dir`, each under a temp name first, then renamed."""
    out_dir = Path(out_dir)
    paths = {}
    for kind, write in (("html", snapshot.save_html), ("json", snapshot.save_json)):
        final = out_dir / f"{name}.{kind}"
        with files.atomic_path(final) as tmp:
            write(str(tmp))
        paths[kind] = str(final)
    return paths


def _metrics_of_type(result: dict, type_name: str) -> list[dict]:
    return [m for m in result["metrics"] if m["config"]["type"].rsplit(":", 1)[-1] == type_name]


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def drift_summary(snapshot) -> dict:
    """share and count of drifted columns, and which columns drifted (read by metric type, not position)."""
    result = snapshot.dict()
    counts = _metrics_of_type(result, "DriftedColumnsCount")
    if not counts:
        raise ValueError("the snapshot holds no DriftedColumnsCount metric: is it a data-drift report?")
    value = counts[0]["value"]
    drifted = sorted(
        t["metric_config"]["params"]["column"]
        for t in result["tests"]
        if t["metric_config"]["params"]["type"].endswith(":ValueDrift") and t["status"] == "FAIL"
    )
    return {"drift_share": float(value["share"]), "drifted_count": int(value["count"]), "drifted_columns": drifted}


def prediction_summary(snapshot) -> dict:
    """Score drift p-value, mean score and acceptance rate of the current model, and the flip share."""
    result = snapshot.dict()
    out: dict = {}
    for m in _metrics_of_type(result, "ValueDrift"):
        out["score_drift_p_value"] = _clean(float(m["value"]))
    for m in _metrics_of_type(result, "MeanValue"):
        out[f"mean_{m['config']['column']}"] = _clean(float(m["value"]))
    for m in _metrics_of_type(result, "DecisionFlipShare"):
        out["decision_flip_share"] = float(m["value"])
    out["score_drifted"] = any(
        t["status"] == "FAIL" for t in result["tests"] if t["metric_config"]["params"]["type"].endswith(":ValueDrift")
    )
    return out


def recourse_summary(snapshot) -> dict:
    """validity, cost, plausibility, ledger validity (overall and by issuing version) and failed tests."""
    result = snapshot.dict()
    out: dict = {"ledger_still_valid_by_version": {}}
    for type_name, key in (("RecourseValidity", "validity"), ("RecourseCost", "cost"),
                           ("RecoursePlausibility", "plausibility")):
        for m in _metrics_of_type(result, type_name):
            out[key] = float(m["value"])
    for m in _metrics_of_type(result, "LedgerStillValid"):
        issued_by = m["config"].get("issued_by")
        if issued_by is None:
            out["ledger_still_valid"] = float(m["value"])
        else:
            out["ledger_still_valid_by_version"][str(issued_by)] = float(m["value"])
    out["failed_tests"] = [t["name"] for t in result["tests"] if t["status"] == "FAIL"]
    return out


def write_json(data: dict, path: str | Path) -> str:
    """A small JSON file, written under a temp name then renamed."""
    return str(files.write_json(path, data, default=str))


def plot_ledger_validity(history: pd.DataFrame, path: str | Path) -> str:
    """PNG: share of each issuing version's recourses still valid, over the monitored champion versions.

    `history` has columns monitored_version, issued_by, n, still_valid (`Ledger.validity_history`).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on a server or in a worker
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history.empty:
        ax.text(0.5, 0.5, "no recourse in the ledger yet", ha="center", va="center", transform=ax.transAxes)
    else:
        order = sorted(history["monitored_version"].astype(str).unique(), key=version_key)
        x_of = {v: i for i, v in enumerate(order)}
        for issued_by, rows in sorted(history.groupby(history["issued_by"].astype(str)), key=lambda g: version_key(g[0])):
            xs = [x_of[str(v)] for v in rows["monitored_version"]]
            ax.plot(xs, rows["still_valid"], marker="o", label=f"issued by v{issued_by}")
        ax.set_xticks(range(len(order)), [f"v{v}" for v in order])
        ax.legend(fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("champion classifier version judging the recourse")
    ax.set_ylabel("share still valid")
    ax.set_title("Issued recourses still valid")
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return str(path)


def version_key(version: str) -> tuple:
    """Sort key: numeric registry versions in numeric order ('10' after '9'), anything else after them."""
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))
