"""Write report snapshots as HTML and JSON, read their figures back by metric, and plot ledger validity."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from genre.core import files


def save_report(snapshot, out_dir: str | Path, name: str, title: str | None = None,
                subtitle: str | None = None) -> dict[str, str]:
    """Write `<name>.html` and `<name>.json` under `out_dir`, each under a temp name first, then renamed.
    `title` (what is compared: versions and dates) heads the HTML page and names its browser tab."""
    out_dir = Path(out_dir)
    paths = {}
    for kind, write in (("html", snapshot.save_html), ("json", snapshot.save_json)):
        final = out_dir / f"{name}.{kind}"
        with files.atomic_path(final) as tmp:
            write(str(tmp))
            if kind == "html" and title:
                _add_title(tmp, title, subtitle)
            elif title:  # Evidently's JSON keeps no name: the title goes in beside its metrics and tests
                data = json.loads(tmp.read_text(encoding="utf-8"))
                tmp.write_text(json.dumps({"title": title, "subtitle": subtitle, **data}), encoding="utf-8")
        paths[kind] = str(final)
    return paths


def _add_title(path: Path, title: str, subtitle: str | None) -> None:
    """A <title> and a heading on Evidently's page (it renders none of its own)."""
    page = path.read_text(encoding="utf-8")
    head = f"<head>\n<title>{html.escape(title)}</title>"
    heading = (f'<body>\n<div style="font-family: sans-serif; margin: 16px 24px 0">'
               f'<h1 style="font-size: 22px; margin: 0">{html.escape(title)}</h1>'
               + (f'<p style="margin: 6px 0 0">{html.escape(subtitle)}</p>' if subtitle else "") + "</div>")
    path.write_text(page.replace("<head>", head, 1).replace("<body>", heading, 1), encoding="utf-8")


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
    value, config = counts[0]["value"], counts[0]["config"]
    drifted = sorted(
        t["metric_config"]["params"]["column"]
        for t in result["tests"]
        if t["metric_config"]["params"]["type"].endswith(":ValueDrift") and t["status"] == "FAIL"
    )
    out = {"drift_share": float(value["share"]), "drifted_count": int(value["count"]), "drifted_columns": drifted,
           "columns": len(config.get("columns") or []), "drift_share_threshold": float(config.get("drift_share", 0.5))}
    out["dataset_drift"] = out["drift_share"] >= out["drift_share_threshold"]
    return out | {"headline": drift_headline(out)}


def drift_headline(summary: dict) -> str:
    """One sentence that never hides a drifted column behind Evidently's "Dataset Drift is NOT detected"."""
    n, total, cols = summary["drifted_count"], summary["columns"], ", ".join(summary["drifted_columns"])
    share, limit = summary["drift_share"], summary["drift_share_threshold"]
    if summary["dataset_drift"]:
        return f"Dataset drift DETECTED: {n} of {total} columns drifted ({share:.0%} >= {limit:.0%}): {cols}"
    if n:
        return (f"Dataset drift not detected ({share:.0%} of columns drifted, under the {limit:.0%} threshold), "
                f"but {n} column test(s) FAILED: {cols} drifted")
    return f"No drift: none of the {total} columns drifted"


def prediction_summary(snapshot) -> dict:
    """Drift p-value of h's probability, its mean and the acceptance rate under the current model, the flip share."""
    result = snapshot.dict()
    out: dict = {}
    for m in _metrics_of_type(result, "ValueDrift"):
        out["h_drift_p_value"] = _clean(float(m["value"]))
    for m in _metrics_of_type(result, "MeanValue"):
        out[f"mean_{m['config']['column']}"] = _clean(float(m["value"]))
    for m in _metrics_of_type(result, "CategoryCount"):
        out["acceptance_rate"] = _clean(float(m["value"]["share"]))
    for m in _metrics_of_type(result, "DecisionFlipShare"):
        out["decision_flip_share"] = float(m["value"])
    out["h_drifted"] = any(
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
