"""Where the served model lives, and `make serve`: `mlflow models serve` on the champion pair's `genre-recourse`.

    python -m tasks.serving.serve [--port 5001] [--pin] [--model-uri URI]

The registry is the pipeline's (`tasks.settings`: MLFLOW_TRACKING_URI, else SQLite at
`<state>/mlflow.db`), where the state is the one every entry point uses (`tasks.home`: GENRE_HOME, or the
story `make run` last finished there); answers land in that state's ledger (or GENRE_LEDGER_URL).

The champion pair is resolved as batch recourse and monitoring resolve it (`registry.resolve_champion`), and
the server follows it: every `GENRE_SERVE_POLL_SECONDS` (default 30) the served model checks the champion
again and swaps in a new pair (each answer names its classifier and generator versions). `--pin`, or an
explicit `--model-uri`, serves one version and says so.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tasks.home import state_home
from tasks.settings import RECOURSE_MODEL, PipelineSettings

POLL = "GENRE_SERVE_POLL_SECONDS"


def resolve_registry() -> str:
    """Set MLFLOW_TRACKING_URI and GENRE_HOME in os.environ (the state `tasks.home` resolves, so that answers
    land in its ledger); return the URI."""
    home = state_home()
    os.environ["GENRE_HOME"] = str(home)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    uri = PipelineSettings.from_env().mlflow_uri
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def champion_model_uri() -> tuple[str, str]:
    """`models:/genre-recourse/<v>` of the resolved champion pair and a line describing it; the resolution's
    warnings go to stderr. Raises MixedChampion (a RuntimeError) or RuntimeError when nothing can be served."""
    from tasks.registry.client import resolve_champion

    champion = resolve_champion()
    for warning in champion.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if champion.classifier_version is None:
        raise RuntimeError("no champion pair in the registry yet: run `make run` (or the retrain flow) first")
    pair = f"classifier v{champion.classifier_version} + generator v{champion.generator_version}"
    if champion.recourse_version is None:
        raise RuntimeError(f"no {RECOURSE_MODEL} version bundles the champion {pair} (registered before "
                           f"serving existed?): retrain, or pass --model-uri")
    return f"models:/{RECOURSE_MODEL}/{champion.recourse_version}", pair


def serve_command(model_uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return [str(mlflow_bin), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host, "-p", str(port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve recourse over HTTP (POST /invocations).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5001)))
    parser.add_argument("--model-uri", default=None, help="serve this model, pinned (default: the champion pair)")
    parser.add_argument("--pin", action="store_true", help="serve the current champion pair and never reload")
    args = parser.parse_args(argv)
    uri = resolve_registry()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.model_uri:
        model_uri, what = args.model_uri, f"{args.model_uri}, pinned: a new champion is not picked up"
    else:
        model_uri, pair = champion_model_uri()
        seconds = float(os.environ.get(POLL, "30"))
        if args.pin or seconds <= 0:
            what = f"{model_uri} ({pair}), pinned: a new champion is not picked up until a restart"
        else:
            os.environ["GENRE_SERVE_FOLLOW"] = str(seconds)
            what = f"the champion, now {pair} ({model_uri}); a new champion is picked up within {seconds:g} s"
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH even when the venv is not activated.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    command = serve_command(model_uri, args.port)
    print(f"registry {uri}; ledger under GENRE_LEDGER_URL or {os.environ.get('GENRE_HOME', '.genre')}/ledger.db\n"
          f"serving {what}\n{' '.join(command)}", file=sys.stderr, flush=True)
    os.execv(command[0], command)  # same pid: `kill <pid>` stops the server


if __name__ == "__main__":
    raise SystemExit(main())
