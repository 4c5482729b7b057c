"""Reconcile what a killed or crashed run left behind; every registry-using flow calls this first.

1. A retrain run still RUNNING while no retrain is alive (the retrain lock is free and its owner process,
   when on this host, is gone) is marked FAILED; so is a monitoring run whose owner process is gone.
2. Every model version whose run did not finish (FAILED or KILLED) is tagged `genre.orphan` and loses its
   aliases: it is never served or promoted (`registry.move_champion` refuses it).
3. `genre-generator@champion` and `genre-recourse@champion` are realigned to the pair that
   `genre-classifier@champion` resolves to (`registry.realign_champion`), with a warning for each change.

Nothing is touched while a retrain is alive: its run is RUNNING on purpose and its alias moves are under way.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from mlflow.exceptions import MlflowException

from tasks.registry import client as registry
from tasks.liveness import OWNER_TAG, RetrainLock, owner_alive
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL, PipelineSettings

log = logging.getLogger(__name__)
MONITOR_EXPERIMENT = "genre-monitoring"
DEAD_STATUSES = ("FAILED", "KILLED")


def reconcile(settings: PipelineSettings, *, holding_retrain_lock: bool = False) -> dict:
    """Clean up after killed runs (see the module docstring); returns what was done, with warnings."""
    done: dict = {"failed_runs": [], "orphans": [], "warnings": [], "skipped": None}
    if not holding_retrain_lock and RetrainLock(settings.home).alive():
        done["skipped"] = "a retrain is running: its run and alias moves are its own"
        return done
    client = registry.configure_mlflow(settings)
    for name, needs_lock_free in ((settings.experiment, True), (MONITOR_EXPERIMENT, False)):
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            continue
        for run in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
            alive = owner_alive(run.data.tags.get(OWNER_TAG))
            # A retrain with no owner tag, or one on another host, is judged by the lock alone.
            dead = alive is False or (needs_lock_free and alive is None and OWNER_TAG not in run.data.tags)
            if dead:
                when = datetime.now(timezone.utc).isoformat(timespec="seconds")
                client.set_tag(run.info.run_id, "genre.reconciled", f"{when}: its process was gone, marked FAILED")
                client.set_terminated(run.info.run_id, "FAILED")
                done["failed_runs"].append(run.info.run_id)
    for model in (CLASSIFIER_MODEL, GENERATOR_MODEL, RECOURSE_MODEL):
        try:
            versions = client.search_model_versions(f"name='{model}'")
        except MlflowException:
            continue
        for v in versions:
            if registry.ORPHAN in v.tags or registry.run_status(client, v.run_id) not in DEAD_STATUSES:
                continue
            client.set_model_version_tag(model, v.version, registry.ORPHAN,
                                         f"run {v.run_id} did not finish (killed or crashed): never promoted")
            for alias in client.get_model_version(model, v.version).aliases:
                client.delete_registered_model_alias(model, alias)
            done["orphans"].append(f"{model} v{v.version}")
    try:
        done["warnings"] = registry.realign_champion(settings)
    except registry.MixedChampion as exc:
        done["warnings"] = [str(exc)]
    for what in ("failed_runs", "orphans"):
        if done[what]:
            log.warning("reconciled leftovers of killed runs: %s %s", what.replace("_", " "), done[what])
    return done
