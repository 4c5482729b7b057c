"""`genre recourse --input people.csv --output recourse.csv [--model-uri URI]`: the served model, offline.

Loads `genre-recourse` (default `models:/genre-recourse@champion`, registry as in `tasks.serving.serve`) through
MLflow's pyfunc and answers a CSV in chunks with a progress bar; each answered row is recorded in the
ledger exactly as over HTTP. It lives in `tasks/`, not `genre/`, because it needs MLflow and the ledger;
MLflow is imported inside `main` so `genre --help` and the other subcommands do not pay for it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from genre.core.datasets import DataError

CHUNK_ROWS = 256


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="CSV of applicants: the data set's feature columns "
                        "(an optional applicant_id column names each row in the ledger)")
    parser.add_argument("--output", required=True, help="CSV to write: one answer row per input row")
    parser.add_argument("--model-uri", default=None, help="default: the genre-recourse version of the champion "
                        "pair (genre-classifier@champion and the generator trained against it)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows per predict call")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tasks.registry.artifacts import ArtifactError
    from tasks.data.csv_safe import write_csv
    from tasks.serving.serve import champion_model_uri, resolve_registry

    path, out_path = Path(args.input), Path(args.output)
    people = _read(path)
    uri = resolve_registry()
    import mlflow.pyfunc

    # The champion pair as serving and monitoring resolve it; refused (MixedChampion) the same way too.
    model_uri = args.model_uri or champion_model_uri()[0]
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except ArtifactError as exc:  # the version exists, one of its files is damaged
        raise RuntimeError(f"cannot load {model_uri} ({exc}); restore that file, or retrain to register a new "
                           f"version") from exc
    except Exception as exc:  # MlflowException and friends: say where we looked and what to do
        raise RuntimeError(f"cannot load {model_uri} from the registry {uri} ({exc}); run `make run` (or the "
                           f"retrain flow) first, set GENRE_HOME / MLFLOW_TRACKING_URI, or pass --model-uri") from exc
    spec = model.unwrap_python_model().genre.spec
    missing = [f for f in spec.features if f not in people.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; expected {list(spec.features)}", row=0, column=missing[0])
    parts = []
    with tqdm(total=len(people), unit="row", desc="recourse", file=sys.stderr, disable=len(people) <= args.chunk_rows) as bar:
        for start in range(0, len(people), args.chunk_rows):
            chunk = people.iloc[start:start + args.chunk_rows].reset_index(drop=True)
            parts.append(model.predict(chunk))
            bar.update(len(chunk))
    answers = pd.concat(parts, ignore_index=True)
    if "applicant_id" in people.columns:
        answers.insert(0, "applicant_id", people["applicant_id"].to_numpy())
    write_csv(answers, out_path)  # text cells that a spreadsheet would run as formulas are neutralised
    counts = answers["status"].value_counts().to_dict()
    print(f"{len(answers)} rows answered by {model_uri} ({uri}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; written to {out_path}")
    return 0


def _read(path: Path) -> pd.DataFrame:
    """Every cell as text: the served model checks each row itself, so one bad cell marks only its row."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.EmptyDataError:
        raise DataError(path, "the file is empty: expected a header with the data set's features", row=0) from None
    if frame.empty:
        raise DataError(path, "the file has a header but no data rows", row=1)
    return frame
