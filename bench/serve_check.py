"""Issue 5's must-show, reproducible: after `make run`, `genre recourse` on 20 compas test rows the champion
rejects, the same rows POSTed to `make serve`, then loopback latency and rows/s (bounded loops).

    GENRE_HOME=... .venv/bin/python bench/serve_check.py [--port 5123]   # writes bench/out/serve_check.json
    GENRE_COMPILE=1 GENRE_HOME=... .venv/bin/python bench/serve_check.py   # the server compiles single queries

The CLI and the server are started as a user would (same environment, their own registry resolution); the
server is stopped by its process-group id. Every request here is recorded in the story's ledger.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ)  # before resolve_registry() points os.environ at a story


def post(port: int, frame: pd.DataFrame) -> tuple[list[dict], float]:
    body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as resp:
        data = json.loads(resp.read())
    return data["predictions"], time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5123)
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "out"))
    args = parser.parse_args()
    from genre.core.datasets import get_spec, load_split
    from genre.core.classifier import rejects
    from tasks.registry import client as registry
    from tasks.serving.serve import resolve_registry

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"registry": resolve_registry()}
    spec = get_spec("compas")
    features = list(spec.features)
    cv, gv = registry.champion_versions()
    h, enc = registry.load_classifier_version(cv)
    test = load_split(spec, "test")[features]
    rejected = test[rejects(h.predict_proba(enc.transform(test)))]
    people = rejected.sample(20, random_state=5).reset_index(drop=True)
    people.to_csv(out_dir / "serve_people.csv", index=False)

    cli = subprocess.run([str(ROOT / ".venv/bin/genre"), "recourse", "--input", str(out_dir / "serve_people.csv"),
                          "--output", str(out_dir / "serve_out.csv")], env=ENV, capture_output=True, text=True)
    print(cli.stdout.strip(), cli.stderr.strip()[-300:])
    answers = pd.read_csv(out_dir / "serve_out.csv", keep_default_na=False)
    ok = answers[answers["status"] == "ok"]
    accepted = h.predict_proba(enc.transform(ok[features].astype({f: str for f in spec.categorical})))
    report |= {"champion": [cv, gv], "cli_statuses": answers["status"].value_counts().to_dict(),
               "champion_h_on_ok_recourse": [float(accepted.min()), float(accepted.max())],
               "immutable_changed": int(sum((ok[f].astype(str) != people.loc[ok.index, f].astype(str)).sum()
                                            for f in spec.immutable)),
               "age_decreased": int((ok["age"] < people.loc[ok.index, "age"]).sum())}

    log = open(out_dir / "serve_check.log", "wb")
    server = subprocess.Popen(["make", "-s", "serve", f"PORT={args.port}"], cwd=ROOT, env=ENV, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    report["genre_compile"] = os.environ.get("GENRE_COMPILE", "")
    started = time.perf_counter()
    try:
        for _ in range(600):  # at most ~5 min (a cold compile with GENRE_COMPILE=1 takes one or two)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/ping", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        report["server_ready_seconds"] = round(time.perf_counter() - started, 1)
        served, _ = post(args.port, people)
        http = pd.DataFrame(served)
        # `changed` is a JSON array over HTTP and that array's text in the CLI's CSV.
        http["changed"] = [json.dumps(c) if isinstance(c, list) else c for c in http["changed"]]
        report["http_equals_cli"] = all([str(a) for a in http[c]] == [str(b) for b in answers[c]]
                                        for c in [*features, "status", "changed"])
        latency = sorted(post(args.port, people.iloc[[i % 20]])[1] for i in range(50))
        report["single_row_ms"] = {"median": 1000 * statistics.median(latency), "p90": 1000 * latency[44]}
        for name, frame in (("random_1000", test.sample(1000, random_state=1)),
                            ("rejected_1000", rejected.sample(1000, random_state=2, replace=len(rejected) < 1000))):
            runs = [post(args.port, frame.reset_index(drop=True)) for _ in range(3)]
            seconds = statistics.median(s for _, s in runs)
            report[name] = {"seconds": seconds, "rows_per_s": 1000 / seconds,
                            "statuses": pd.Series([r["status"] for r in runs[0][0]]).value_counts().to_dict()}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    (out_dir / "serve_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if report.get("http_equals_cli") else 1


if __name__ == "__main__":
    raise SystemExit(main())
