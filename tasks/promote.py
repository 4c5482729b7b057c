"""Write gate verdicts onto the pair, and move `champion` to a passing pair (together, or not at all)."""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tasks.registry import move_champion, set_tags
from tasks.settings import CLASSIFIER_MODEL, GENERATOR_MODEL, PROMOTED_EVENT, PipelineSettings


@task(cache_policy=NO_CACHE)
def tag_gates(classifier_version: str, generator_version: str | None, gates: list[dict],
              settings: PipelineSettings) -> bool:
    """Every gate's figure, threshold and verdict as tags on the pair's versions; returns whether all passed."""
    passed = all(g["passed"] for g in gates)
    tags = {"gates.passed": passed}
    for g in gates:
        tags |= {f"gate.{g['name']}.figure": g["figure"], f"gate.{g['name']}.threshold": g["threshold"],
                 f"gate.{g['name']}.verdict": "pass" if g["passed"] else "fail"}
    set_tags(CLASSIFIER_MODEL, classifier_version, tags, settings)
    if generator_version is not None:
        set_tags(GENERATOR_MODEL, generator_version, tags, settings)
    return passed


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
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
