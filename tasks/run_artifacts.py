"""Prefect artifacts of the pipeline's runs: what a Prefect user looks for on a flow run's Artifacts tab.

- each retrain: a table artifact `gate-table-<dataset>-v<classifier version>` (every gate: figure, threshold,
  verdict) and a link artifact `mlflow-run-<dataset>-v<version>` to its MLflow run;
- each monitoring run: a markdown artifact `monitoring-<dataset>-v<version>` (the headline and what was
  compared) and link artifacts to its Evidently HTML reports and its MLflow run.

Keys carry the version, so `prefect artifact ls` lists one gate table per retrain. Links to MLflow point at
`GENRE_MLFLOW_UI` (default http://127.0.0.1:5000, where `mlflow ui` listens in the README's command).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

UI_ENV = "GENRE_MLFLOW_UI"


def key(*parts: object) -> str:
    """An artifact key: lowercase letters, digits and dashes only (Prefect's rule)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]+", "-", "-".join(str(p) for p in parts).lower())).strip("-")


def mlflow_run_url(experiment_id: str, run_id: str) -> str:
    ui = os.environ.get(UI_ENV, "http://127.0.0.1:5000").rstrip("/")
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def gate_rows(gates: list[dict]) -> list[dict]:
    return [{"gate": g["name"], "figure": round(float(g["figure"]), 4), "threshold": round(float(g["threshold"]), 4),
             "verdict": "pass" if g["passed"] else "FAIL", "note": g.get("warning") or ""} for g in gates]


def retrain_artifacts(dataset: str, result: dict, experiment_id: str) -> list[str]:
    """The retrain's gate table and the link to its MLflow run; their keys."""
    cv, gv = result["classifier_version"], result["generator_version"]
    outcome = "promoted to champion" if result["promoted"] else "stays challenger"
    pair = f"classifier v{cv}" + (f" + generator v{gv}" if gv else " (no generator)")
    gates_key, run_key = key("gate-table", dataset, f"v{cv}"), key("mlflow-run", dataset, f"v{cv}")
    create_table_artifact(table=gate_rows(result["gates"]), key=gates_key,
                          description=f"Gates of {pair} on {dataset} store {result['data_hash']} "
                                      f"({result['store_rows']} rows): {outcome}. MLflow run {result['run_id']}.")
    create_link_artifact(link=mlflow_run_url(experiment_id, result["run_id"]), link_text=f"MLflow run of {pair}",
                         key=run_key, description=f"Params, metrics, datasets, plots and models of {pair} "
                                                      f"(run {result['run_id']}).")
    return [gates_key, run_key]


def monitoring_artifacts(summary: dict, headline: str, experiment_id: str | None) -> list[str]:
    """The monitoring run's headline (markdown) and links to its reports and MLflow run; their keys."""
    dataset, version = summary["dataset"], summary["classifier_version"]
    keys = [key("monitoring", dataset, f"v{version}")]
    lines = [f"# Monitoring classifier v{version} (generator v{summary['generator_version']}) on {dataset}",
             "", headline, ""]
    files = {name: (summary.get(name) or {}).get("files", {}).get("html")
             for name in ("data_drift", "prediction_drift", "recourse")}
    for name, path in files.items():
        if path:
            lines.append(f"- {name.replace('_', ' ')}: `{path}`")
    create_markdown_artifact(markdown="\n".join(lines), key=keys[0],
                             description=f"Monitoring of classifier v{version} against v{summary['previous_version']}")
    for name, path in files.items():
        if path:
            keys.append(key("report", name, dataset, f"v{version}"))
            create_link_artifact(link=Path(path).resolve().as_uri(), link_text=f"{name.replace('_', ' ')} report",
                                 key=keys[-1], description=f"Evidently {name.replace('_', ' ')} report (HTML)")
    if experiment_id and summary.get("mlflow_run_id"):
        keys.append(key("mlflow-monitoring", dataset, f"v{version}"))
        create_link_artifact(link=mlflow_run_url(experiment_id, summary["mlflow_run_id"]),
                             link_text=f"MLflow monitoring run of v{version}", key=keys[-1])
    return keys
