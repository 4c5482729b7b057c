"""Which data set a pipeline run is about: a built-in name, a user's spec file, or the name of a spec file
used before under the same GENRE_HOME.

A spec file given to any flow (or `make run` / `make deploy`) is copied to `<GENRE_HOME>/specs/<name>.json`
with its data file paths made absolute, so later steps that only know the name (monitoring, the registry's
`dataset` tag, scheduled deployment runs) find the same spec. Its data contract is built from the spec and
its training split into `<GENRE_HOME>/contracts/<name>.json`, never into the repository; a built-in data set
keeps the reviewed contract in `data_contracts/`.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from genre.core import files
from genre.core.datasets import BUILTIN, DatasetSpec, file_sha256, get_spec, is_spec_path, load_split, resolve_file

# A spec's name becomes folder and file names (incoming/<name>, story-<name>-<time>, contracts/<name>.json).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def specs_dir(home: Path) -> Path:
    return Path(home) / "specs"


def contracts_dir(home: Path) -> Path:
    return Path(home) / "contracts"


def registered(home: Path) -> list[str]:
    folder = specs_dir(home)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def resolve_spec(dataset: str | Path, home: Path) -> DatasetSpec:
    """The spec for `dataset`: a built-in name, a spec file (registered under `home`), or a registered name.

    Raises `genre.core.datasets.SpecNotFound` ("spec file not found: <path>") for a missing file, ValueError for
    an unknown name or a spec whose name cannot be a folder name or is a built-in's.
    """
    text = str(dataset)
    if text in BUILTIN:
        return BUILTIN[text]
    if is_spec_path(text):
        spec = get_spec(Path(text).expanduser())
        if spec.name in BUILTIN:
            raise ValueError(f"spec file {text}: its name '{spec.name}' is a built-in data set's; give it another "
                             f"name (it names the folders and the registry's dataset tag)")
        if not SAFE_NAME.fullmatch(spec.name):
            raise ValueError(f"spec file {text}: name '{spec.name}' must be letters, digits, '_', '-' or '.' (it "
                             f"names folders), at most 64 characters")
        _register(spec, home)
        return spec
    path = specs_dir(home) / f"{text}.json"
    if path.exists():
        return DatasetSpec.from_dict(json.loads(path.read_text()))
    known = registered(home)
    raise ValueError(f"unknown data set '{text}': use one of {sorted(BUILTIN)} or a path to a spec file "
                     f"(.yaml/.json)" + (f"; spec files used under {home}: {known}" if known else ""))


def _register(spec: DatasetSpec, home: Path) -> Path:
    path = specs_dir(home) / f"{spec.name}.json"
    text = json.dumps(spec.to_dict(), indent=1, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        files.write_text(path, text)
    return path


def contract_for(spec: DatasetSpec, home: Path, data_dir: Path | None = None, log=None, *, policy=None,
                 rebuild: bool = False) -> Path:
    """The data contract (GX suite file) a batch of `spec` must meet.

    Built-in data sets: the reviewed `data_contracts/<name>.json`. A user's spec: `<home>/contracts/<name>.json`,
    built from the spec and its training split the first time (default `ContractPolicy`, or `policy`), and
    rebuilt when either changes or `rebuild` is set (`python -m data_contracts build --dataset SPEC_FILE`)."""
    from data_contracts.suite import ContractPolicy, build_suite, save_suite, suite_path

    if spec.name in BUILTIN and BUILTIN[spec.name] == spec:
        return suite_path(spec.name)
    train_file = resolve_file(spec, "train", data_dir)
    source = hashlib.sha256((json.dumps(spec.to_dict(), sort_keys=True) + file_sha256(train_file)).encode()).hexdigest()
    path = suite_path(spec.name, contracts_dir(home))
    if path.exists() and not rebuild:
        try:
            if json.loads(path.read_text()).get("meta", {}).get("source_sha256") == source:
                return path
        except ValueError:
            pass  # a damaged contract file is rebuilt below
    suite = build_suite(spec, load_split(spec, "train", data_dir), policy or ContractPolicy())
    suite.meta["source_sha256"] = source
    suite.meta["built_from"] = {"spec": spec.name, "train_file": str(train_file)}
    save_suite(suite, path)
    if log is not None:
        log.info("built the data contract for '%s' from %s: %s", spec.name, train_file, path)
    return path
