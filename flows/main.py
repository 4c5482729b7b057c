"""`make run`: the whole story on one data set, on embedded defaults (Prefect without a server, MLflow on
SQLite under the story's folder).

1. the training split arrives as the first batch: ingested, h and the generator trained, registered and
   promoted; recourse issued to a batch of applicants (recorded in the ledger);
2. a shifted batch of held-out rows (see `flows/batches.py`) arrives: ingested, retrained, promoted, then
   monitored (data drift, prediction drift, and how many issued recourses survive the new h); the new
   champion issues recourse to a second batch of applicants;
3. recourse is a promise (issue 13, docs/promise.md): a batch of applicants who acted on their recourse,
   with their own outcomes, arrives; the challenger trained on it would refuse more than the commitment
   gate's share of the recourse already issued, so it is blocked. A second challenger trained with the
   issued recourses as weighted favourable rows (`retrain --keep-promise`) keeps the promise and is
   promoted, then monitored (validity over time, every champion version);
4. a corrupted batch arrives: quarantined with its summary, the champion unchanged.
Each run gets its own folder `<GENRE_HOME>/story-<name>-<time>`, so earlier runs are kept; a finished story
becomes the state of GENRE_HOME (`<GENRE_HOME>/current`, see `tasks.home`) for every other entry point.

`--dataset` is a built-in name or a spec file (YAML/JSON, see README "Your own data set"): the spec is kept
under the story's folder (`specs/<name>.json`), its data contract built there, and every folder is named
after the spec's `name`.
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from genre.core import files
from genre.core.datasets import get_spec, is_spec_path, load_split
from tasks.home import point_current, root_home

# The shifted batch is a tenth of the training split (at least 500 rows), so its shift shows in the
# drift of the training store on adult's 36k rows too, not only on compas' 4.6k.
MIN_SHIFT_ROWS = 500


def _drop(frame, folder: Path, name: str) -> Path:
    with files.atomic_path(folder / name) as tmp:  # the ingest flow never sees half a file
        frame.to_csv(tmp, index=False)
    return folder / name


def story(dataset: str, home: Path, config: str | None = None) -> dict:
    # The story's folder is chosen here, before anything reads the settings.
    os.environ["GENRE_HOME"] = str(home)
    from flows.batches import corrupted_batch, partition_test, shifted_batch
    from flows.ingest import ingest
    from flows.issue_recourse import issue_recourse
    from flows.monitor import monitor
    from flows.retrain import retrain
    from tasks.registry.client import champion_versions
    from tasks.settings import PipelineSettings
    from tasks.data.specs import resolve_spec

    settings = PipelineSettings.from_env(config)
    spec = resolve_spec(dataset, settings.home)  # a spec file is registered under the story's folder
    train, test = load_split(spec, "train", settings.data_dir), load_split(spec, "test", settings.data_dir)
    parts = partition_test(test, settings.training.seed)
    incoming = settings.incoming(spec.name)
    out: dict = {"dataset": spec.name, "home": str(home), "mlflow_uri": settings.mlflow_uri, "steps": []}

    print(f"\n=== 1. first batch: {len(train)} training rows ===", flush=True)
    _drop(train, incoming, "batch-001-train.csv")
    out["ingest_1"] = ingest(dataset=spec.name, config=config)
    out["retrain_1"] = retrain(dataset=spec.name, config=config)
    if not out["retrain_1"]["promoted"]:
        raise RuntimeError(f"the first pair failed its gates: {out['retrain_1']['gates']}")
    people = parts["applicants"][list(spec.features)].copy()
    people.insert(0, "applicant_id", [f"A{i + 1:05d}" for i in range(len(people))])
    half = len(people) // 2
    applicants = _drop(people.iloc[:half], settings.home / "applicants", "applicants-001.csv")
    out["recourse"] = issue_recourse(applicants=str(applicants), dataset=spec.name)
    # The first champion's baseline audit, its own recourse included (the first point of validity over time).
    monitor(version=out["retrain_1"]["classifier_version"])

    size = min(max(MIN_SHIFT_ROWS, len(train) // 10), 3 * len(parts["shift"]) // 4)
    print(f"\n=== 2. shifted batch: {size} held-out rows, seeded shift (flows/batches.py) ===", flush=True)
    _drop(shifted_batch(parts["shift"], train, spec, settings.training.seed, size), incoming, "batch-002-shifted.csv")
    out["ingest_2"] = ingest(dataset=spec.name, config=config)
    out["retrain_2"] = retrain(dataset=spec.name, config=config)
    out["monitor"] = monitor(version=out["retrain_2"]["classifier_version"]) if out["retrain_2"]["promoted"] else None
    applicants = _drop(people.iloc[half:], settings.home / "applicants", "applicants-002.csv")
    out["recourse_2"] = issue_recourse(applicants=str(applicants), dataset=spec.name)

    from flows.promise_story import keep_the_promise

    out.update(keep_the_promise(spec, train, incoming, settings, config, max(MIN_SHIFT_ROWS, len(train) // 10)))

    print("\n=== 4. corrupted batch: nulls, an unknown category, an out-of-range value ===", flush=True)
    before = champion_versions(settings)
    _drop(corrupted_batch(parts["corrupt"], train, spec), incoming, "batch-004-corrupted.csv")
    out["ingest_3"] = ingest(dataset=spec.name, config=config)
    out["champion_before_corrupt"], out["champion_after_corrupt"] = before, champion_versions(settings)
    return out


def summary(out: dict) -> str:
    from flows.promise_story import promise_lines

    r1, r2, mon = out["retrain_1"], out["retrain_2"], out["monitor"] or {}
    lines = [f"\n==================== genre pipeline: {out['dataset']} ====================",
             f"story folder: {out['home']}"]
    for label, r in (("retrain 1", r1), ("retrain 2", r2)):
        lines.append(f"{label}: classifier v{r['classifier_version']} + generator v{r['generator_version']} on data "
                     f"{r['data_hash']} ({r['store_rows']} rows) -> {'PROMOTED to champion' if r['promoted'] else 'stays challenger'}")
        fig = r["figures"]
        lines.append(f"  h: accuracy {fig['accuracy']:.3f}, AUC {fig['auc']:.3f}; recourse (n={fig.get('n', 0)}): "
                     f"cost {fig['cost']:.3f}, validity {fig['validity']:.3f}, validity under h "
                     f"{fig['validity_classifier']:.3f}, plausibility {fig['plausibility']:.3f}")
        if "factuals_already_favourable" in fig:
            lines.append(f"  factuals already favourable to the judge: {fig['factuals_already_favourable']:.1%}")
        for g in r["gates"]:
            lines.append(f"  gate {g['name']:<24} {g['figure']:.3f} {g.get('op', '>=')} {g['threshold']:.3f}  "
                         f"{'pass' if g['passed'] else 'FAIL'}")
            if g.get("warning"):
                lines.append(f"    {g['warning']}")
    for rec in (out["recourse"], out["recourse_2"]):
        lines.append(f"recourse issued: {rec['issued']} of {rec['rejected']} rejected applicants (of {rec['applicants']}), "
                     f"mean cost {rec['mean_cost'] if rec['mean_cost'] is None else round(rec['mean_cost'], 3)}, "
                     f"by classifier v{rec['classifier_version']} / generator v{rec['generator_version']}; results {rec['results']}")
    drift = mon.get("data_drift") or {}
    lines.append(f"monitoring v{mon.get('classifier_version')} against v{mon.get('previous_version')}: data drift share "
                 f"{drift.get('drift_share')}, drifted columns {drift.get('drifted_columns')}")
    if mon.get("headline"):
        lines.append(f"  headline: {mon['headline']}")
    pred = mon.get("prediction_drift") or {}
    if pred:
        lines.append(f"  prediction drift: decision flip share {pred.get('decision_flip_share')}")
    for version, v in (mon.get("ledger_validity") or {}).items():
        lines.append(f"  ledger: recourse issued by classifier v{version}: {v['n']} recorded, "
                     f"{v['still_valid']:.1%} still valid under v{mon.get('classifier_version')}")
    lines.append(f"  recourse report: {json.dumps({k: v for k, v in (mon.get('recourse') or {}).items() if k not in ('files', 'title')}, default=str)}")
    names = [Path(p).name for key in ("data_drift", "prediction_drift", "recourse")
             for p in ((mon.get(key) or {}).get("files") or {}).values()] + ([Path(mon["plot"]).name] if mon.get("plot") else [])
    lines.append(f"  reports in {mon.get('report_dir')}: {', '.join(names)}")
    lines += promise_lines(out)
    for q in out["ingest_3"]:
        lines.append(f"corrupted batch {q['file']}: {q['status']} -> {q.get('quarantined_to')}")
        lines.append(f"  root cause: {q.get('reason')}")
        lines.append(f"  summary {q.get('summary')} (failed columns {q.get('failed_columns')})")
        if q.get("summary"):
            lines += [f"    {line}" for line in Path(q["summary"]).read_text().splitlines()
                      if line.startswith(("## ", "- row"))]
    same = out["champion_before_corrupt"] == out["champion_after_corrupt"]
    lines.append(f"champion after the corrupted batch: classifier v{out['champion_after_corrupt'][0]} + generator "
                 f"v{out['champion_after_corrupt'][1]} ({'unchanged' if same else 'CHANGED'})")
    alerts = Path(out["home"]) / "alerts.jsonl"
    if alerts.exists():
        lines.append(f"alerts sent (quarantine, drift, failures): {len(alerts.read_text().splitlines())} in {alerts}")
    lines.append("Prefect artifacts (a gate table per retrain, report links): .venv/bin/prefect artifact ls")
    lines.append(f"look at it all: .venv/bin/mlflow ui --backend-store-uri {out['mlflow_uri']} --host 127.0.0.1 --port 5000")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="compas")
    parser.add_argument("--config", help="pipeline config YAML (default configs/pipeline.yaml)")
    args = parser.parse_args(argv)
    dataset = str(Path(args.dataset).expanduser().resolve()) if is_spec_path(args.dataset) else args.dataset
    name = get_spec(dataset).name  # "spec file not found: <path>" before any folder is made
    root = root_home()
    home = root / f"story-{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    out = story(dataset, home, args.config)
    text = summary(out)
    (home / "summary.txt").write_text(text + "\n")
    (home / "summary.json").write_text(json.dumps(out, indent=1, default=str))
    point_current(root, home)  # from now on deploy, serve, the CLI and the flows use this story's state
    print(text)
    print(f"this story is now the state of GENRE_HOME={root} (its `current` file): `make deploy`, `make serve` and "
          f"`genre recourse` use it")
    return 0 if out["champion_before_corrupt"] == out["champion_after_corrupt"] else 1


if __name__ == "__main__":
    from flows.runtime import run_main

    raise SystemExit(run_main(main))
