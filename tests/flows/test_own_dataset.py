"""A user's own data set through `make run`'s whole story, from a spec file alone (issue 16).

The data set is compas copied under another name into a folder outside the repository, described by a spec
file written here with relative `train_file` / `test_file` paths and without an `integer` list (as a user
would write it). `flows.main.main` runs the real story on it (ingest, retrain, promotion, recourse, the shifted
batch, monitoring, the corrupted batch) with the tiny training config; then `genre recourse` answers applicants
from the story's registry. Real Prefect flows, real MLflow on SQLite, real files.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from data_contracts.suite import SUITE_DIR
from genre.core.datasets import get_spec, load_split

pytestmark = pytest.mark.slow

NAME = "mycredit"
GATES = {"auc_margin": 0.05, "auc_floor": 0.6, "validity_floor": 0.5, "validity_h_floor": 0.5,
         "plausibility_floor": 0.3}
WHOLE = r"-?\d+"  # a whole number as written: "30", never "30.0"


def _write_own_data_set(folder: Path) -> Path:
    """compas's splits as `data/mine-*.csv` beside `spec/mycredit.yaml`, which points at them relatively."""
    compas = get_spec("compas")
    (folder / "data").mkdir(parents=True)
    (folder / "spec").mkdir()
    load_split(compas, "train").to_csv(folder / "data" / "mine-train.csv", index=False)
    load_split(compas, "test").to_csv(folder / "data" / "mine-test.csv", index=False)
    spec = {"name": NAME, "features": list(compas.features), "target": compas.target,
            "categorical": {k: list(v) for k, v in compas.categorical.items()},
            "immutable": list(compas.immutable), "increase_only": ["age"],
            "train_file": "../data/mine-train.csv", "test_file": "../data/mine-test.csv"}
    path = folder / "spec" / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_make_run_story_on_a_spec_file(tmp_path, prefect_harness, pipeline_home, monkeypatch, capsys):
    from flows import main as story_main
    from genre.cli import main as cli

    spec_path = _write_own_data_set(tmp_path / "elsewhere")
    root = tmp_path / "genre-home"
    root.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # `genre recourse` below sets it; undone after
    monkeypatch.delenv("GENRE_DATA_DIR", raising=False)  # the spec's own paths, not the shared folder
    with pipeline_home(root, GATES):
        monkeypatch.chdir(tmp_path)  # a relative spec path, as `make run DATASET=...` would get it
        assert story_main.main(["--dataset", str(spec_path.relative_to(tmp_path))]) == 0
        printed = capsys.readouterr().out

        # Folders are named after the spec's name, never its path.
        stories = list(root.iterdir())
        assert [p.name.startswith(f"story-{NAME}-") for p in stories if p.is_dir()] == [True], stories
        home = next(p for p in stories if p.is_dir())
        out = json.loads((home / "summary.json").read_text())
        assert out["dataset"] == NAME and f"genre pipeline: {NAME}" in printed
        # The spec is kept under the story's folder, with absolute data paths; the contract is built there too.
        kept = json.loads((home / "specs" / f"{NAME}.json").read_text())
        assert kept["train_file"] == str((tmp_path / "elsewhere" / "data" / "mine-train.csv").resolve())
        contract = json.loads((home / "contracts" / f"{NAME}.json").read_text())
        assert contract["meta"]["dataset"] == NAME and contract["meta"]["reference_rows"] > 4000
        assert not (SUITE_DIR / f"{NAME}.json").exists()

        # Ingest, retrain and promotion on the first batch; recourse issued; the shifted batch retrained and
        # monitored; the corrupted batch quarantined with the champion unchanged.
        assert [o["status"] for o in out["ingest_1"]] == ["ingested"]
        assert out["retrain_1"]["promoted"], out["retrain_1"]["gates"]
        assert 0 <= out["retrain_1"]["figures"]["factuals_already_favourable"] <= 1
        assert out["recourse"]["issued"] > 0
        assert [o["status"] for o in out["ingest_2"]] == ["ingested"]
        assert out["monitor"] is not None and out["monitor"]["data_drift"]["drift_share"] is not None
        # Step 3 (issue 13): both challengers were judged by the commitment gate on every recourse issued.
        issued = out["recourse"]["issued"] + out["recourse_2"]["issued"]
        for key in ("promise_broken", "promise_kept"):
            gate = next(g for g in out[key]["gates"] if g["name"] == "commitment")
            assert gate["rescored"] == issued and gate["passed"] == (gate["figure"] <= gate["threshold"])
        assert out["promise_kept"]["keep_promise"] and "commitment gate:" in printed
        assert [o["status"] for o in out["ingest_3"]] == ["quarantined"]
        assert out["champion_before_corrupt"] == out["champion_after_corrupt"]

        # The MLflow run says which recipe trained the generator and where it came from.
        mlflow.set_tracking_uri(out["mlflow_uri"])
        run = mlflow.get_run(out["retrain_1"]["run_id"])
        source = run.data.params["generator_recipe.source"]
        assert source.startswith("default sized to the data") and f"{NAME}.json" in source
        assert "the pipeline config sets" in source  # the tiny test config
        assert run.data.tags["genre.recipe_source"] == source

        # Recourse in the data's own units: age, priors_count and length_of_stay were whole in training, so
        # they are written whole (the spec has no `integer` list), both by the batch flow and `genre recourse`.
        issued = pd.read_csv(out["recourse"]["results"], dtype=str, keep_default_na=False)
        issued = issued[issued["status"] == "recourse_issued"]
        for f in ("age", "priors_count", "length_of_stay"):
            assert len(issued) and issued[f"recourse.{f}"].str.fullmatch(WHOLE).all(), issued[f"recourse.{f}"].head()
            assert issued[f].str.fullmatch(WHOLE).all(), issued[f].head()  # the applicant's own values too
        applicants = load_split(get_spec(spec_path), "test")[list(get_spec(spec_path).features)].head(60)
        src, dst = tmp_path / "people.csv", tmp_path / "answers.csv"
        applicants.to_csv(src, index=False)
        monkeypatch.setenv("GENRE_HOME", str(home))
        assert cli.main(["recourse", "--input", str(src), "--output", str(dst)]) == 0
        answers = pd.read_csv(dst, dtype=str, keep_default_na=False)
        answered = answers[answers["status"].isin(["ok", "already_favourable"])]
        assert (answers["status"] == "ok").any(), answers["status"].value_counts()
        # Answered by the champion the story ended with, whose moved columns kept their whole numbers.
        assert set(answers["classifier_version"]) == {str(out["champion_after_corrupt"][0])}
        for f in ("age", "priors_count", "length_of_stay"):
            assert answered[f].str.fullmatch(WHOLE).all(), answered[f].head()
