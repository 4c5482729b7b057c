"""Where the served model lives, and `make serve`: `mlflow models serve` on the champion `genre-recourse`.

    python -m tasks.serve [--port 5001] [--model-uri models:/genre-recourse@champion]

The registry is the pipeline's (`tasks.settings`: MLFLOW_TRACKING_URI, else SQLite at
`$GENRE_HOME/mlflow.db`). `make run` keeps each story in its own `$GENRE_HOME/story-<dataset>-<time>/`
folder; when `$GENRE_HOME/mlflow.db` does not exist and MLFLOW_TRACKING_URI is unset, the newest story's
registry is used, and GENRE_HOME points at that story so that answers land in its ledger.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tasks.settings import RECOURSE_MODEL, PipelineSettings

DEFAULT_MODEL_URI = f"models:/{RECOURSE_MODEL}@champion"


def resolve_registry() -> str:
    """Set MLFLOW_TRACKING_URI (and GENRE_HOME for a story's registry) in os.environ; return the URI."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    settings = PipelineSettings.from_env()
    home = settings.home
    if not (home / "mlflow.db").exists():
        stories = sorted(home.glob("story-*/mlflow.db"), key=lambda p: p.stat().st_mtime)
        if stories:
            home = stories[-1].parent
            os.environ["GENRE_HOME"] = str(home)
            print(f"using the newest `make run` story's registry: {home}", file=sys.stderr)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def serve_command(model_uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return [str(mlflow_bin), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host, "-p", str(port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve recourse over HTTP (POST /invocations).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5001)))
    parser.add_argument("--model-uri", default=DEFAULT_MODEL_URI)
    args = parser.parse_args(argv)
    uri = resolve_registry()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH even when the venv is not activated.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    command = serve_command(args.model_uri, args.port)
    print(f"registry {uri}; ledger under GENRE_LEDGER_URL or {os.environ.get('GENRE_HOME', '.genre')}/ledger.db\n"
          f"{' '.join(command)}", file=sys.stderr, flush=True)
    os.execv(command[0], command)  # same pid: `kill <pid>` stops the server


if __name__ == "__main__":
    raise SystemExit(main())
