"""`genre-recourse`: the champion pair served as one MLflow pyfunc model (a thin adapter).

`load_context` rebuilds the encoder, h and the generator from the pair's checkpoints; `predict` delegates
to `genre.core.serving.answer` and records every answered row in the ledger (`tasks.ledger.recorder`). It is
registered in the same MLflow run as its pair, tagged with both versions, and moves `champion` with them
(`tasks.registry.client.move_champion`).

The input signature types every feature as `Any` on purpose: MLflow enforces column types before
`predict`, so with typed columns a single `"abc"` in `age` would fail the whole request with a 400;
`genre.core.serving` checks each row against the data set's spec instead and marks only that row
`invalid_input`. A missing column still fails the request (the columns are required).
"""
from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, Schema

from genre.core import compiled
from genre.core.serving import MONOTONE, answer_columns, answer_rows
from tasks import model_code
from tasks.registry.artifacts import load_classifier, load_encoder, load_genre, load_json
from tasks.serving.honour import HONOUR_SWITCH, honour, real_ids
from tasks.training.pyfunc_models import PIP_REQUIREMENTS, feature_inputs, value_type
from tasks.ledger.recorder import LEDGER_SWITCH, ServingLedger, recording_enabled
from tasks.settings import GENERATOR_MODEL, RECOURSE_MODEL, temporary_env

ID_COLUMN = "applicant_id"
FOLLOW = "GENRE_SERVE_FOLLOW"  # seconds between checks of the champion pair; unset or 0: serve a pinned pair
log = logging.getLogger(__name__)
# Recourse needs SQLAlchemy for the ledger on top of what the other two models need.
RECOURSE_REQUIREMENTS = [*PIP_REQUIREMENTS, "sqlalchemy==2.1.9"]


class RecourseModel(mlflow.pyfunc.PythonModel):
    """Artifacts: `classifier` (h), `encoder`, `genre` (generator + support + second opinion), `sampling`, `pair`.

    With `GENRE_SERVE_FOLLOW=<seconds>` (set by `make serve` / `tasks.serving.serve`), a thread re-resolves the
    champion pair every that many seconds (`registry.resolve_champion`, the rule batch recourse and
    monitoring use) and swaps in the new pair's generator and classifier when it changed; while the champion
    cannot be resolved (`MixedChampion`), requests are refused with that reason. Otherwise the model serves
    the pair it was registered with.
    """

    def load_context(self, context) -> None:
        a = context.artifacts
        self._lock = threading.Lock()
        self._refusal: str | None = None
        self.sampling = load_json(a["sampling"], "sampling settings")
        self.genre = compile_if_requested(
            load_genre(a["genre"], encoder=load_encoder(a["encoder"]), classifier=load_classifier(a["classifier"])),
            self.sampling)
        self.pair = load_json(a["pair"], "pair versions")
        self.ledger = ServingLedger() if recording_enabled() else None
        self.honour, self.tolerance = _honour_settings(self.ledger is not None)
        settle_heap()
        seconds = float(os.environ.get(FOLLOW, "0") or 0)
        if seconds > 0:
            threading.Thread(target=self._follow, args=(seconds,), name="follow-champion", daemon=True).start()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        with self._lock:  # one consistent pair per request, even while a new one is swapped in
            genre, sampling, pair, refusal = self.genre, self.sampling, self.pair, self._refusal
        if refusal is not None:
            raise RuntimeError(refusal)
        out, typed = answer_rows(model_input, genre, **sampling)
        given = real_ids(model_input, ID_COLUMN)
        out["commitment"] = None
        honoured = {}
        if self.honour and any(given):
            honoured = honour(model_input, out, given, genre.spec, genre.encoder,
                              lambda ids: self.ledger.issued_to(genre.spec.name, ids), self.tolerance)
        if self.ledger is not None:
            out["ledger_id"] = self.ledger.record(model_input, out, spec=genre.spec, versions=pair, applicant_ids=given,
                                                  honoured=honoured, typed=typed)
        else:
            out["ledger_id"] = None
        out["classifier_version"] = pair["classifier_version"]
        out["generator_version"] = pair["generator_version"]
        return out.astype(object).where(out.notna(), None)

    def _follow(self, seconds: float) -> None:
        while True:
            time.sleep(seconds)
            try:
                self.check_champion()
            except Exception:  # the registry briefly unreachable, say: keep serving what we have
                log.exception("could not check the champion; still serving classifier v%s + generator v%s",
                              self.pair["classifier_version"], self.pair["generator_version"])

    def check_champion(self) -> bool:
        """Load the resolved champion pair if it differs from the one served; True when it changed."""
        from tasks.registry.client import MixedChampion, resolve_champion

        try:
            champion = resolve_champion()
        except MixedChampion as exc:
            if self._refusal != str(exc):
                log.warning("refusing requests: %s", exc)
            with self._lock:
                self._refusal = str(exc)
            return False
        if champion.classifier_version is None:
            return False
        wanted = {"classifier_version": champion.classifier_version, "generator_version": champion.generator_version}
        if {k: self.pair[k] for k in wanted} == wanted and self._refusal is None:
            return False
        for warning in champion.warnings:
            log.warning("%s", warning)
        # The generator version's GenRe folder holds the generator, the h it was trained against (that is the
        # classifier version) and its encoder: everything a pair needs, whether or not a recourse model bundles it.
        adapter = mlflow.pyfunc.load_model(f"models:/{GENERATOR_MODEL}/{champion.generator_version}").unwrap_python_model()
        compile_if_requested(adapter.genre, adapter.sampling)  # before the swap: the old pair serves meanwhile
        with self._lock:
            self.genre, self.sampling = adapter.genre, adapter.sampling
            self.pair = {**wanted, "run_id": None}
            self._refusal = None
        log.warning("now serving the champion classifier v%s + generator v%s", *wanted.values())
        del adapter
        settle_heap()  # the old pair is collected here, and the new one frozen
        return True


def settle_heap() -> None:
    """Collect once, then move every object left (the models, torch, pandas, MLflow: ~0.5 million) into the
    garbage collector's permanent generation (`gc.freeze`). Otherwise the objects a request allocates trigger
    full collections that walk all of them: ~50 ms of a 1000-row request's 290 ms here (issue 14), and the odd
    single row. `gc.unfreeze` first, so that a pair swapped out is collected rather than kept frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def compile_if_requested(genre, sampling: dict):
    """With `GENRE_COMPILE=1`, compile the served setting's single query (`GenRe.compile_single_queries`) now,
    before the pair answers a request; the first request would otherwise wait minutes for it."""
    if compiled.requested():
        # The setting `answer_rows` will decode with: the sampling settings, monotone unless they say otherwise.
        compiled_ok = genre.compile_single_queries(sampling["k"], sampling["temperature"],
                                                   sampling.get("monotone", MONOTONE))
        log.warning("single queries for %s: %s", genre.spec.name,
                    "compiled" if compiled_ok else "eager (compilation fell back, see above)")
    return genre


def signature(spec) -> ModelSignature:
    """Features as required `Any` columns (see the module docstring), an optional applicant id; typed output,
    `changed` a list of feature names (a JSON array in the HTTP answer, not a string holding one)."""
    inputs = Schema(feature_inputs(spec) + [ColSpec(AnyType(), ID_COLUMN, required=False)])
    types = {"cost": "double", "score": "double", "probability": "double", "reason": "string",
             "changed": Array("string")}
    outputs = [ColSpec("string", "status")] + [
        ColSpec(types.get(c) or value_type(spec, c), c, required=False) for c in answer_columns(spec)[1:]
    ] + [ColSpec("string", "commitment", required=False), ColSpec("long", "ledger_id", required=False),
         ColSpec("string", "classifier_version"),
         ColSpec("string", "generator_version")]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def _honour_settings(recording: bool) -> tuple[bool, float]:
    """(honour issued recourse?, tolerance): the config's `commitment` section, `GENRE_HONOUR_RECOURSE=off|on`
    over it. Honouring needs the ledger (to look up and to record every honoured answer): with recording off
    it is off too."""
    from tasks.settings import PipelineSettings

    config = PipelineSettings.from_env().commitment
    switch = os.environ.get(HONOUR_SWITCH, "").strip().lower()
    on = config.honour if not switch else switch not in {"off", "0", "false", "no"}
    if on and not recording:
        log.warning("honouring issued recourse is off: the serving ledger is off (%s), and every honoured answer "
                    "must be recorded", LEDGER_SWITCH)
        on = False
    return on, config.tolerance


@contextmanager
def _no_ledger():
    """MLflow calls `predict` on the input example while logging: those rows are not answers to anyone, so
    nothing is recorded and nothing honoured (switched off outright: no warning that honouring needs the ledger),
    and nothing is compiled (a pipeline run with `GENRE_COMPILE=1` in its environment is not a server)."""
    with temporary_env({LEDGER_SWITCH: "off", HONOUR_SWITCH: "off", compiled.ENV: None}):
        yield


def recourse_artifacts(run_dir: Path, classifier_version: str, generator_version: str, run_id: str) -> dict[str, str]:
    """Write the pair's versions beside the run's checkpoints; the artifact paths the model bundles."""
    pair = run_dir / "pair.json"
    pair.write_text(json.dumps({"classifier_version": str(classifier_version),
                                "generator_version": str(generator_version), "run_id": run_id}))
    return {"classifier": str(run_dir / "classifier.pt"), "encoder": str(run_dir / "encoder.json"),
            "genre": str(run_dir / "genre"), "sampling": str(run_dir / "sampling.json"), "pair": str(pair)}


def register_recourse_model(run_id: str, run_dir: Path, example: pd.DataFrame, tags: dict[str, object],
                            classifier_version: str, generator_version: str) -> str:
    """Log `genre-recourse` into the pair's active run and register it with its tags (the pair's versions
    included) in one call; its version. The caller sets aliases once the run has finished."""
    artifacts = recourse_artifacts(run_dir, classifier_version, generator_version, run_id)
    adapter = RecourseModel()
    with _no_ledger():
        adapter.load_context(SimpleNamespace(artifacts=artifacts))
        spec = adapter.genre.spec
        example = example[list(spec.features)].reset_index(drop=True)
        info = mlflow.pyfunc.log_model(
            name="recourse", python_model=model_code.RECOURSE, artifacts=artifacts, signature=signature(spec),
            input_example=example, pip_requirements=RECOURSE_REQUIREMENTS,
        )
    tags = {**tags, "classifier_version": classifier_version, "generator_version": generator_version}
    return str(mlflow.register_model(info.model_uri, RECOURSE_MODEL, tags={k: str(v) for k, v in tags.items()}).version)
