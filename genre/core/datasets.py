"""Recourse data sets: what each column means (`DatasetSpec`) and how its splits are read and checked.

The three built-in specs describe the paper's preprocessed Adult, COMPAS and HELOC splits (the CARLA
`cf-data` files). A user's own data set is a CSV plus a spec file (YAML or JSON) with the same fields.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CF_DATA_COMMIT = "2d56677"
CF_DATA_URL = "https://raw.githubusercontent.com/carla-recourse/cf-data/{commit}/{file}"

# sha256 of the public files at CF_DATA_COMMIT: a download that does not match is refused.
CF_DATA_SHA256 = {
    "adult_test.csv": "5fa0554e72173473f4f826ed28daec5f2ce76c3af7a9f1cb6fe3a806f87b6b6b",
    "adult_train.csv": "949236c2502a3daa4b660ba35093ee133e1d152f865a5323768b0b7a50a8e292",
    "compas_test.csv": "6849f34e0edad380bfa3b62c5a947bd0a9122cc639496e3048f04c6c674127eb",
    "compas_train.csv": "d9cab073348a902bc09e4e0792f2b73aab1c6e419db1da655bbad978f33b80cf",
    "heloc_test.csv": "56a00b4f7b96bf1020a8d05d3b61ea3a4bc6fe637376c0b929dceb3f319a0e58",
    "heloc_train.csv": "92187da9daab7d1b074192d45d29fd3c1aca1f3cac8f37800780310ea7cf2b36",
}


class DataError(ValueError):
    """A data file that does not match its spec; the message names the file, row and column."""

    def __init__(self, file: str | Path, message: str, *, row: int | None = None, column: str | None = None):
        self.file, self.row, self.column = str(file), row, column
        where = [f"file {self.file}"]
        if row == 0:
            where.append("header row (line 1)")
        elif row is not None:
            # Data rows count from 1; the CSV line adds one for the header.
            where.append(f"row {row} (line {row + 1})")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass(frozen=True)
class DatasetSpec:
    """What a recourse data set's columns mean.

    `features` is the order the models see. Categorical features list their categories as strings;
    every other feature is numeric, and those in `integer` hold whole numbers. Immutable features never
    change in a recourse; `increase_only` / `decrease_only` features may only move one way.
    """

    name: str
    features: tuple[str, ...]
    target: str
    categorical: dict[str, tuple[str, ...]] = field(default_factory=dict)
    immutable: tuple[str, ...] = ()
    integer: tuple[str, ...] = ()
    increase_only: tuple[str, ...] = ()
    decrease_only: tuple[str, ...] = ()
    favourable_label: int = 1
    train_file: str = ""
    test_file: str = ""
    # Decimal places a recourse is written with, per numeric feature (`{feature: places}`); a feature not
    # listed keeps the precision seen in its training values (see `MinMaxEncoder.fit`).
    decimals: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept lists from YAML/JSON but keep the frozen spec hashable-ish and immutable.
        for name in ("features", "immutable", "integer", "increase_only", "decrease_only"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(
            self, "categorical", {k: tuple(str(c) for c in v) for k, v in dict(self.categorical).items()}
        )
        object.__setattr__(self, "decimals", {k: int(v) for k, v in dict(self.decimals or {}).items()})
        known = set(self.features)
        for group in ("immutable", "integer", "increase_only", "decrease_only"):
            unknown = [f for f in getattr(self, group) if f not in known]
            if unknown:
                raise ValueError(f"spec '{self.name}': {group} names unknown features {unknown}")
        unknown = [f for f in self.categorical if f not in known]
        if unknown:
            raise ValueError(f"spec '{self.name}': categorical names unknown features {unknown}")
        wrong = [f for f in self.decimals if f not in known or f in self.categorical]
        if wrong:
            raise ValueError(f"spec '{self.name}': decimals names features that are not numeric features {wrong}")
        negative = [f for f, v in self.decimals.items() if v < 0]
        if negative:
            raise ValueError(f"spec '{self.name}': decimals must be 0 or more, got {negative}")
        if self.target in known:
            raise ValueError(f"spec '{self.name}': the target '{self.target}' is also listed as a feature")
        both = set(self.increase_only) & set(self.decrease_only)
        if both:
            raise ValueError(f"spec '{self.name}': {sorted(both)} cannot be both increase- and decrease-only")

    @property
    def columns(self) -> list[str]:
        return [*self.features, self.target]

    @property
    def d(self) -> int:
        return len(self.features)

    def is_categorical(self, feature: str) -> bool:
        return feature in self.categorical

    def mask(self, group: str) -> np.ndarray:
        """Boolean mask over `features` for 'categorical', 'immutable', 'increase_only', ..."""
        members = set(self.categorical) if group == "categorical" else set(getattr(self, group))
        return np.array([f in members for f in self.features], dtype=bool)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["categorical"] = {k: list(v) for k, v in self.categorical.items()}
        if not self.decimals:
            out.pop("decimals")  # older readers (saved encoders, registered models) do not know the field
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetSpec":
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "DatasetSpec":
        """Read a spec from YAML or JSON. A relative `train_file` / `test_file` resolves against the folder the
        spec file is in (not the current directory); an absolute one is used as it is."""
        path = Path(path)
        if not path.is_file():
            raise SpecNotFound(f"spec file not found: {path.resolve()}")
        text = path.read_text()
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        for key in ("train_file", "test_file"):
            if data.get(key) and not Path(data[key]).is_absolute():
                data[key] = str((path.parent / data[key]).resolve())
        return cls.from_dict(data)


ADULT = DatasetSpec(
    name="adult",
    features=(
        "age", "workclass", "fnlwgt", "education-num", "marital-status", "occupation", "relationship",
        "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
    ),
    target="income",
    categorical={
        "workclass": ("Non-Private", "Private"),
        "marital-status": ("Married", "Non-Married"),
        "occupation": ("Managerial-Specialist", "Other"),
        "relationship": ("Husband", "Non-Husband"),
        "race": ("Non-White", "White"),
        "sex": ("Female", "Male"),
        "native-country": ("Non-US", "US"),
    },
    immutable=("race", "sex"),
    integer=("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"),
    increase_only=("age",),
    train_file="adult_train.csv",
    test_file="adult_test.csv",
)

COMPAS = DatasetSpec(
    name="compas",
    features=("age", "two_year_recid", "c_charge_degree", "race", "sex", "priors_count", "length_of_stay"),
    target="score",
    categorical={
        # Stored as 0/1 in the file, but the paper treats it as a category.
        "two_year_recid": ("0", "1"),
        "c_charge_degree": ("F", "M"),
        "race": ("African-American", "Other"),
        "sex": ("Female", "Male"),
    },
    immutable=("race", "sex"),
    integer=("age", "priors_count", "length_of_stay"),
    increase_only=("age",),
    train_file="compas_train.csv",
    test_file="compas_test.csv",
)

HELOC = DatasetSpec(
    name="heloc",
    features=(
        "ExternalRiskEstimate", "MSinceOldestTradeOpen", "MSinceMostRecentTradeOpen", "AverageMInFile",
        "NumSatisfactoryTrades", "NumTrades60Ever2DerogPubRec", "NumTrades90Ever2DerogPubRec",
        "PercentTradesNeverDelq", "MSinceMostRecentDelq", "NumTotalTrades", "NumTradesOpeninLast12M",
        "PercentInstallTrades", "MSinceMostRecentInqexcl7days", "NumInqLast6M", "NumInqLast6Mexcl7days",
        "NetFractionRevolvingBurden", "NetFractionInstallBurden", "NumRevolvingTradesWBalance",
        "NumInstallTradesWBalance", "NumBank2NatlTradesWHighUtilization", "PercentTradesWBalance",
    ),
    target="RiskPerformance",
    train_file="heloc_train.csv",
    test_file="heloc_test.csv",
)

BUILTIN: dict[str, DatasetSpec] = {s.name: s for s in (ADULT, COMPAS, HELOC)}


class SpecNotFound(ValueError):
    """A spec file path that does not exist (a ValueError, like an unknown data set name)."""


SPEC_SUFFIXES = {".yaml", ".yml", ".json"}


def is_spec_path(name_or_path: str | Path) -> bool:
    """True for what names a spec file (a .yaml/.yml/.json suffix or a folder separator), not a built-in name."""
    text = str(name_or_path)
    return Path(text).suffix.lower() in SPEC_SUFFIXES or "/" in text or os.sep in text


def get_spec(name_or_path: str | Path) -> DatasetSpec:
    """A built-in spec by name, or a user's spec from a YAML/JSON file ("spec file not found: <path>" when a
    path does not exist)."""
    if str(name_or_path) in BUILTIN:
        return BUILTIN[str(name_or_path)]
    path = Path(name_or_path)
    if is_spec_path(name_or_path):
        return DatasetSpec.from_file(path)
    raise ValueError(
        f"unknown data set '{name_or_path}': use one of {sorted(BUILTIN)} or a path to a spec file (.yaml/.json)"
    )


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genre" / "cf-data"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_file(file_name: str, cache_dir: Path | None = None) -> Path:
    """Path to a cf-data file in the cache, downloading it (pinned commit, sha256-checked) if missing."""
    cache_dir = Path(cache_dir or default_cache_dir())
    target = cache_dir / file_name
    expected = CF_DATA_SHA256.get(file_name)
    if target.exists() and (expected is None or file_sha256(target) == expected):
        return target
    url = CF_DATA_URL.format(commit=CF_DATA_COMMIT, file=file_name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(partial, "wb") as out:
            out.write(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"cannot download {file_name} from {url} ({exc}). Offline? Point GENRE_DATA_DIR at a folder "
            f"holding the cf-data CSV files, e.g. `export GENRE_DATA_DIR=../shared/data/cf-data`."
        ) from exc
    got = file_sha256(partial)
    if expected is not None and got != expected:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{file_name} from {url} has sha256 {got}, expected {expected}; refusing it")
    partial.replace(target)  # atomic: the cache never holds half a file
    return target


def resolve_file(spec: DatasetSpec, split: str, data_dir: str | Path | None = None) -> Path:
    """Where a split lives: an absolute spec path, `data_dir`, `GENRE_DATA_DIR`, else the download cache."""
    name = spec.train_file if split == "train" else spec.test_file
    if split not in {"train", "test"} or not name:
        raise ValueError(f"spec '{spec.name}' has no '{split}' file")
    if Path(name).is_absolute():
        return Path(name)
    data_dir = data_dir or os.environ.get("GENRE_DATA_DIR")
    if data_dir:
        path = Path(data_dir) / name
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (GENRE_DATA_DIR={data_dir})")
        return path
    return fetch_file(name)


def read_table(path: str | Path, spec: DatasetSpec, *, require_target: bool = True) -> pd.DataFrame:
    """Read a CSV and check it against the spec; raise `DataError` naming file, row and column.

    Categorical columns come back as strings, integer features as int64, other numerics as float64,
    the target as int64. Columns come back in spec order.
    """
    path = Path(path)
    wanted = spec.columns if require_target else list(spec.features)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.EmptyDataError:
        raise DataError(path, f"the file is empty: expected a header with {wanted}", row=0, column=wanted[0]) from None
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; expected {wanted}", row=0, column=missing[0])
    if raw.shape[0] == 0:
        raise DataError(path, "the file has a header but no data rows", row=1, column=wanted[0])
    return coerce_frame(raw[wanted], spec, source=str(path))


EMPTY_VALUES = frozenset({"", "nan", "NaN", "None"})


def coerce_frame(raw: pd.DataFrame, spec: DatasetSpec, *, source: str = "<frame>") -> pd.DataFrame:
    """Type and check the spec's columns of a string-or-mixed frame (rows numbered from 1)."""
    typed = _coerce_typed(raw, spec)
    return typed if typed is not None else _coerce_checked(raw, spec, source)


def _coerce_typed(raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame | None:
    """`coerce_frame`'s result without pandas' per-column string pass, for the common case of numeric columns
    that arrive already typed (int or float arrays, as JSON and typed frames give them) and known categories;
    None as soon as anything needs `_coerce_checked`'s reading or its error message (which it then gives)."""
    out: dict[str, pd.Series] = {}
    for col in raw.columns:
        values = raw[col].to_numpy()
        if col in spec.categorical:
            domain = spec.categorical[col]
            known = _domain_set(tuple(domain))
            cells = []
            for v in values:
                text = (v if isinstance(v, str) else str(v)).strip()
                if text not in known:
                    if text in EMPTY_VALUES:
                        return None
                    text = canonical_category(text, domain)
                    if text not in known:
                        return None
                cells.append(text)
            out[col] = pd.Series(cells, index=raw.index, dtype=object)
            continue
        if values.dtype.kind not in "if":
            return None
        whole = col in spec.integer or col == spec.target
        if values.dtype.kind == "i":
            numbers = values.astype(np.int64 if whole else np.float64)
        else:
            floats = values.astype(np.float64)
            if not np.isfinite(floats).all():
                return None
            if whole:
                if (np.abs(floats) >= 2.0**63).any() or (floats % 1 != 0).any():
                    return None
                numbers = floats.astype(np.int64)
            else:
                numbers = floats
        if col == spec.target and not np.isin(numbers, [0, 1]).all():
            return None
        out[col] = pd.Series(numbers, index=raw.index)
    return pd.DataFrame(out, index=raw.index)


@functools.lru_cache(maxsize=256)
def _domain_set(domain: tuple[str, ...]) -> frozenset[str]:
    return frozenset(domain)


def _coerce_checked(raw: pd.DataFrame, spec: DatasetSpec, source: str) -> pd.DataFrame:
    """The general reading: every value through its text, each failure a `DataError` naming row and column."""
    out: dict[str, pd.Series] = {}
    for col in raw.columns:
        values = raw[col].astype(str).str.strip()
        empty = values.isin(sorted(EMPTY_VALUES))
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0]) + 1
            raise DataError(source, "empty value", row=row, column=col)
        if col in spec.categorical:
            domain = spec.categorical[col]
            # Files may write a 0/1 category as 0.0/1.0; map numeric spellings onto the domain.
            values = values.map(lambda v: canonical_category(v, domain))
            bad = ~values.isin(domain)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
                raise DataError(
                    source, f"unknown category '{values.iloc[row - 1]}' (allowed: {list(domain)})", row=row, column=col
                )
            out[col] = values.astype(object)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise DataError(source, f"'{values.iloc[row - 1]}' is not a number", row=row, column=col)
        if col in spec.integer or col == spec.target:
            # Beyond int64 a whole float would wrap round to -9223372036854775808: say what was sent instead.
            huge = numbers.abs() >= 2.0**63
            if huge.any():
                row = int(np.flatnonzero(huge.to_numpy())[0]) + 1
                raise DataError(source, f"'{values.iloc[row - 1]}' is too large for a whole number", row=row, column=col)
            frac = numbers % 1 != 0
            if frac.any():
                row = int(np.flatnonzero(frac.to_numpy())[0]) + 1
                raise DataError(source, f"'{values.iloc[row - 1]}' is not a whole number", row=row, column=col)
            numbers = numbers.astype(np.int64)
        else:
            numbers = numbers.astype(np.float64)
        if col == spec.target:
            bad = ~numbers.isin([0, 1])
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
                raise DataError(source, f"target must be 0 or 1, got {numbers.iloc[row - 1]}", row=row, column=col)
        out[col] = numbers
    return pd.DataFrame(out, index=raw.index)


def canonical_category(value: str, domain: tuple[str, ...]) -> str:
    """Files may write a 0/1 category as 0.0/1.0: map numeric spellings onto the domain."""
    if value in domain:
        return value
    try:
        as_float = float(value)
    except ValueError:
        return value
    if as_float.is_integer() and str(int(as_float)) in domain:
        return str(int(as_float))
    return value


def load_split(spec: DatasetSpec | str, split: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The checked train or test table of a data set."""
    spec = get_spec(spec) if not isinstance(spec, DatasetSpec) else spec
    return read_table(resolve_file(spec, split, data_dir), spec)


def split_xy(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, np.ndarray]:
    return frame[list(spec.features)].copy(), frame[spec.target].to_numpy(dtype=np.int64)
