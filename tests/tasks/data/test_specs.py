"""The pipeline's data set resolution (issue 16): built-in names, spec files kept under GENRE_HOME, names of
spec files used before, and data contracts built under GENRE_HOME from the spec, never in the repository."""
from __future__ import annotations

import json

import pytest
import yaml

from data_contracts.suite import SUITE_DIR
from genre.core.datasets import COMPAS, SpecNotFound, load_split
from tasks.data.specs import contract_for, resolve_spec


@pytest.fixture
def spec_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    train = load_split(COMPAS, "train").head(300)
    train.to_csv(data / "train.csv", index=False)
    spec = COMPAS.to_dict() | {"name": "owncompas", "train_file": "data/train.csv", "test_file": "data/train.csv"}
    path = tmp_path / "owncompas.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_builtin_names_resolve_as_before(tmp_path):
    assert resolve_spec("compas", tmp_path) is COMPAS
    assert contract_for(COMPAS, tmp_path) == SUITE_DIR / "compas.json"
    assert not (tmp_path / "specs").exists()


def test_a_spec_file_is_kept_and_found_again_by_name(spec_file, tmp_path):
    home = tmp_path / "home"
    spec = resolve_spec(str(spec_file), home)
    assert spec.name == "owncompas" and spec.train_file == str(spec_file.parent / "data" / "train.csv")
    assert resolve_spec("owncompas", home) == spec  # monitoring and the registry only know the name
    with pytest.raises(ValueError, match=r"unknown data set 'other'.*spec files used under .*\['owncompas'\]"):
        resolve_spec("other", home)


def test_missing_and_clashing_spec_files(tmp_path):
    with pytest.raises(SpecNotFound, match="spec file not found: .*missing.yaml"):
        resolve_spec(str(tmp_path / "missing.yaml"), tmp_path)
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps(COMPAS.to_dict()))
    with pytest.raises(ValueError, match="built-in data set's"):
        resolve_spec(str(clash), tmp_path)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(COMPAS.to_dict() | {"name": "../escape"}))
    with pytest.raises(ValueError, match="names folders"):
        resolve_spec(str(odd), tmp_path)


def test_the_contract_is_built_under_home_and_rebuilt_when_the_data_changes(spec_file, tmp_path):
    home = tmp_path / "home"
    spec = resolve_spec(str(spec_file), home)
    path = contract_for(spec, home)
    assert path == home / "contracts" / "owncompas.json" and not (SUITE_DIR / "owncompas.json").exists()
    first = json.loads(path.read_text())
    assert first["meta"]["reference_rows"] == 300
    mtime = path.stat().st_mtime_ns
    assert contract_for(spec, home) == path and path.stat().st_mtime_ns == mtime  # unchanged: not rebuilt
    load_split(COMPAS, "train").head(400).to_csv(spec.train_file, index=False)
    contract_for(spec, home)
    assert json.loads(path.read_text())["meta"]["reference_rows"] == 400


def test_the_build_command_writes_a_spec_files_contract_under_genre_home(spec_file, tmp_path, monkeypatch):
    from data_contracts.__main__ import main

    home = tmp_path / "home"
    monkeypatch.setenv("GENRE_HOME", str(home))
    assert main(["build", "--dataset", str(spec_file), "--min-rows", "50"]) == 0
    path = home / "contracts" / "owncompas.json"
    assert json.loads(path.read_text())["meta"]["policy"]["min_rows"] == 50
    assert not (SUITE_DIR / "owncompas.json").exists()
    # The flows use that contract as it is (same spec and data), policy included.
    assert contract_for(resolve_spec(str(spec_file), home), home) == path
    assert json.loads(path.read_text())["meta"]["policy"]["min_rows"] == 50


def test_make_deploy_refuses_a_missing_spec_before_starting_anything(tmp_path, monkeypatch):
    from flows.local_server import local_dir, main

    monkeypatch.setenv("GENRE_HOME", str(tmp_path / "home"))
    with pytest.raises(SpecNotFound, match="spec file not found: .*nowhere.yaml"):
        main(["up", "--dataset", str(tmp_path / "nowhere.yaml")])
    assert not local_dir(tmp_path / "home").exists()  # no server, pool or worker was started


def test_applicants_whole_values_are_shown_as_integers():
    import numpy as np

    from genre.core.encoding import MinMaxEncoder
    from tasks.serving.batch import whole_as_integers

    raw = load_split(COMPAS, "train").head(50)[list(COMPAS.features)]
    spec = COMPAS.__class__.from_dict(COMPAS.to_dict() | {"name": "own", "integer": []})
    frame = raw.astype({"age": float, "priors_count": float})
    encoder = MinMaxEncoder(spec).fit(frame)
    shown = whole_as_integers(frame, encoder)
    assert shown["age"].dtype == np.int64 and shown["age"].tolist() == raw["age"].tolist()
    sent = frame.copy()
    sent.loc[0, "age"] = 30.5  # a fraction: every value of that column shown as sent
    assert whole_as_integers(sent, encoder)["age"].dtype == np.float64
