"""The paper's encoding: categoricals as codes, every feature min-max scaled into [0, 1] with training statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genre.core.datasets import DatasetSpec


class NotFittedError(RuntimeError):
    pass


class MinMaxEncoder:
    """Encode a spec's feature table as a float32 matrix in [0, 1] and back.

    Categorical feature with categories c_0..c_{K-1} (spec order) -> code k -> k / (K - 1).
    Numeric feature -> (x - min_) / range_ with min and max of the training table.
    `inverse_transform` returns the original units: categories as strings, integer features as int64.
    `to_units` also writes each numeric feature at its precision (`decimals_`): the spec's `decimals`, else
    the decimal places seen in the training values (0 places: an int64 column).
    """

    def __init__(self, spec: DatasetSpec):
        self.spec = spec

    # ---- fitting -------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame) -> "MinMaxEncoder":
        mins, ranges = [], []
        for f in self.spec.features:
            if f in self.spec.categorical:
                mins.append(0.0)
                ranges.append(float(max(len(self.spec.categorical[f]) - 1, 1)))
            else:
                col = X[f].to_numpy(dtype=np.float64)
                lo, hi = float(col.min()), float(col.max())
                mins.append(lo)
                # A constant column maps to 0; a zero range would divide by zero.
                ranges.append(hi - lo if hi > lo else 1.0)
        self.min_ = np.array(mins, dtype=np.float64)
        self.range_ = np.array(ranges, dtype=np.float64)
        self.decimals_ = [None if f in self.spec.categorical else
                          0 if f in self.spec.integer else
                          self.spec.decimals.get(f, observed_decimals(X[f].to_numpy(dtype=np.float64)))
                          for f in self.spec.features]
        return self

    def _check(self) -> None:
        if not hasattr(self, "min_"):
            raise NotFittedError("MinMaxEncoder is not fitted: call fit(train_features) first")

    # ---- forward / back ------------------------------------------------------------------------
    def codes(self, X: pd.DataFrame) -> np.ndarray:
        """(n, d) float64: categories replaced by their integer code, numerics as they are."""
        out = np.empty((len(X), len(self.spec.features)), dtype=np.float64)
        for j, f in enumerate(self.spec.features):
            if f in self.spec.categorical:
                lookup = {c: i for i, c in enumerate(self.spec.categorical[f])}
                # Plain Python over the column: per-row cost is a dict lookup, with none of pandas' per-call
                # overhead (~0.2 ms a column), which dominates the one-row requests of serving.
                values = X[f].to_numpy()
                codes = [lookup.get(v if isinstance(v, str) else str(v), -1) for v in values]
                if -1 in codes:
                    raise ValueError(f"column '{f}': unknown category '{values[codes.index(-1)]}'")
                out[:, j] = codes
            else:
                out[:, j] = X[f].to_numpy(dtype=np.float64)
        return out

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """(n, d) float32 in [0, 1] for data inside the training range."""
        self._check()
        return ((self.codes(X) - self.min_) / self.range_).astype(np.float32)

    def inverse_transform(self, Z: np.ndarray) -> pd.DataFrame:
        """Back to a table in the applicant's units; categoricals snap to the nearest category."""
        return pd.DataFrame({f: pd.Series(v, dtype=object if f in self.spec.categorical else None)
                             for f, v in self._unit_columns(Z, precise=False).items()})

    def in_units(self, table: pd.DataFrame) -> pd.DataFrame:
        """A feature table written at each numeric feature's precision: 0 places as int64, else rounded.
        An encoder saved before precisions were recorded returns the table unchanged."""
        decimals = getattr(self, "decimals_", None)
        if decimals is None:
            return table
        out = table.copy()
        for f, places in zip(self.spec.features, decimals):
            if places is None or f not in out.columns:
                continue
            out[f] = _at_precision(out[f].to_numpy(dtype=np.float64), places)
        return out

    def to_units(self, Z: np.ndarray) -> pd.DataFrame:
        """`inverse_transform` at the data's own precision (see `in_units`): what a user is shown."""
        return pd.DataFrame({f: pd.Series(v, dtype=object if f in self.spec.categorical else None)
                             for f, v in self._unit_columns(Z, precise=True).items()})

    def in_unit_columns(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        """`in_units(table)` as one numpy array per feature, without a frame."""
        decimals = getattr(self, "decimals_", None) or [None] * len(self.spec.features)
        return {f: table[f].to_numpy() if places is None else _at_precision(table[f].to_numpy(dtype=np.float64), places)
                for f, places in zip(self.spec.features, decimals)}

    def unit_columns(self, Z: np.ndarray) -> dict[str, np.ndarray]:
        """`to_units` as one numpy array per feature (object arrays of str for categoricals), without a frame."""
        return self._unit_columns(Z, precise=True)

    def snap_units(self, Z: np.ndarray) -> np.ndarray:
        """Encoded rows moved to the values `to_units` writes, so what is judged is what is shown
        (`transform(to_units(Z))`, computed without leaving numpy)."""
        self._check()
        raw = np.asarray(Z, dtype=np.float64) * self.range_ + self.min_
        decimals = getattr(self, "decimals_", None)
        for j, f in enumerate(self.spec.features):
            if f in self.spec.categorical:
                raw[:, j] = np.clip(np.rint(raw[:, j]), 0, len(self.spec.categorical[f]) - 1)
                continue
            if f in self.spec.integer:
                raw[:, j] = np.rint(raw[:, j])
            if decimals is not None and decimals[j] is not None:
                raw[:, j] = _at_precision(raw[:, j], decimals[j])
        return ((raw - self.min_) / self.range_).astype(np.float32)

    def _unit_columns(self, Z: np.ndarray, *, precise: bool) -> dict[str, np.ndarray]:
        self._check()
        raw = np.asarray(Z, dtype=np.float64) * self.range_ + self.min_
        decimals = getattr(self, "decimals_", None) if precise else None
        out: dict[str, np.ndarray] = {}
        for j, f in enumerate(self.spec.features):
            if f in self.spec.categorical:
                domain = self.spec.categorical[f]
                idx = np.clip(np.rint(raw[:, j]), 0, len(domain) - 1).astype(int)
                out[f] = np.asarray(domain, dtype=object)[idx]
            else:
                values = np.rint(raw[:, j]).astype(np.int64) if f in self.spec.integer else raw[:, j]
                out[f] = values if decimals is None or decimals[j] is None else _at_precision(values, decimals[j])
        return out

    # ---- helpers for recourse methods ----------------------------------------------------------
    def category_levels(self) -> dict[int, np.ndarray]:
        """Feature index -> the encoded values its categories take (k / (K - 1))."""
        return {
            j: np.arange(len(self.spec.categorical[f]), dtype=np.float64) / self.range_[j]
            for j, f in enumerate(self.spec.features)
            if f in self.spec.categorical
        }

    def project(self, Z: np.ndarray) -> np.ndarray:
        """Clamp to [0, 1] and snap categorical columns (and integer features) to values they can take."""
        self._check()
        Z = np.clip(np.asarray(Z, dtype=np.float64), 0.0, 1.0)
        raw = Z * self.range_ + self.min_
        snap = self.spec.mask("categorical") | self.spec.mask("integer")
        raw[:, snap] = np.rint(raw[:, snap])
        return np.clip((raw - self.min_) / self.range_, 0.0, 1.0).astype(np.float32)

    def state_dict(self) -> dict:
        self._check()
        state = {"spec": self.spec.to_dict(), "min": self.min_.tolist(), "range": self.range_.tolist()}
        if getattr(self, "decimals_", None) is not None:
            state["decimals"] = list(self.decimals_)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "MinMaxEncoder":
        enc = cls(DatasetSpec.from_dict(state["spec"]))
        enc.min_ = np.asarray(state["min"], dtype=np.float64)
        enc.range_ = np.asarray(state["range"], dtype=np.float64)
        if state.get("decimals") is not None:
            enc.decimals_ = [None if v is None else int(v) for v in state["decimals"]]
        return enc


MAX_DECIMALS = 6


def _at_precision(values: np.ndarray, places: int) -> np.ndarray:
    """Values written at `places` decimals: 0 places as int64 (rounded half to even), else rounded floats."""
    values = np.asarray(values, dtype=np.float64)
    return np.rint(values).astype(np.int64) if places == 0 else np.round(values, places)


def observed_decimals(values: np.ndarray, most: int = MAX_DECIMALS) -> int:
    """The fewest decimal places (0..`most`) that write every value as it was read, e.g. 2 for 12.25 and
    3.1; `most` for values with more (float noise, or truly continuous measurements)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    for places in range(most + 1):
        scaled = values * 10.0**places
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-9 * np.maximum(1.0, np.abs(scaled))):
            return places
    return most
