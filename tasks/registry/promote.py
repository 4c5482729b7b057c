"""Gate verdicts as version tags, the challenger aliases, and moving `champion` to a passing pair (together,
or not at all)."""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tasks.registry.client import CHALLENGER, move_champion, set_alias
from tasks.retry import transient_only
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PROMOTED_EVENT, RECOURSE_MODEL, PipelineSettings


def gate_tags(gates: list[dict]) -> dict[str, object]:
    """Every gate's figure, threshold and verdict, and `gates.passed`: tags the pair's versions are created with."""
    tags: dict[str, object] = {"gates.passed": all(g["passed"] for g in gates)}
    for g in gates:
        tags |= {f"gate.{g['name']}.figure": g["figure"], f"gate.{g['name']}.threshold": g["threshold"],
                 f"gate.{g['name']}.verdict": "pass" if g["passed"] else "fail"}
        if g.get("warning"):
            tags[f"gate.{g['name']}.warning"] = g["warning"]
    return tags


@task(cache_policy=NO_CACHE)
def mark_challenger(versions: dict, settings: PipelineSettings) -> None:
    """Point `challenger` at the newly registered versions (once their run has finished)."""
    for model, key in ((CLASSIFIER_MODEL, "classifier_version"), (GENERATOR_MODEL, "generator_version"),
                       (RECOURSE_MODEL, "recourse_version")):
        if versions.get(key) is not None:
            set_alias(model, CHALLENGER, versions[key], settings)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2, retry_condition_fn=transient_only)
def promote_pair(classifier_version: str, generator_version: str, data_hash: str, settings: PipelineSettings) -> str:
    """Move `champion` to the pair and announce it; the monitor deployment triggers on this event."""
    move_champion(classifier_version, generator_version, settings)
    event = emit_event(
        event=PROMOTED_EVENT,
        resource={"prefect.resource.id": CLASSIFIER_MODEL, "version": str(classifier_version)},
        related=[{"prefect.resource.id": GENERATOR_MODEL, "prefect.resource.role": "generator",
                  "version": str(generator_version)}],
        payload={"classifier_version": str(classifier_version), "generator_version": str(generator_version),
                 "data_hash": data_hash},
    )
    return str(event.id) if event else ""
