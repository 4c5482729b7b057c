"""Promote a challenger the commitment gate blocked, on a person's explicit, recorded decision.

The decision is a pair of registry tags on the classifier version, `commitment.override.by` (who) and
`commitment.override.reason` (why), set in the MLflow UI or here with `--by/--reason`. The flow refuses
unless both are there, the commitment gate is the only gate the version failed, and its generator is
complete. It then moves `champion` to the pair, records the decision (who, why, what it voids, the
affected ledger ids) in the ledger database's `commitment_override` table, tags the version
`commitment.override.applied_at`, and monitors the new champion (which shows the override).

    python -m flows.override --version 7 --by "Jane Roe (credit risk)" --reason "regulator-mandated repricing"
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

from prefect import flow, get_run_logger

from tasks.training import commitment as promise
from tasks.registry import client as registry
from tasks.ledger.db import Ledger, ledger_url
from tasks.registry.promote import promote_pair
from tasks.settings import CLASSIFIER_MODEL, PipelineSettings


class OverrideRefused(RuntimeError):
    """The version may not be promoted by an override (the message says why)."""


@flow(name="commitment-override", flow_run_name="commitment-override-v{version}")
def override(version: str, monitor_after: bool = True) -> dict:
    """Promote classifier `version` (and its generator) past a failed commitment gate; see the module docstring."""
    log = get_run_logger()
    settings = PipelineSettings.from_env()
    version = str(version)
    tags = registry.version_tags(CLASSIFIER_MODEL, version, settings)
    decision = promise.override_of(tags)
    if decision is None:
        raise OverrideRefused(f"{CLASSIFIER_MODEL} v{version} has no complete override: set both tags "
                              f"'{promise.OVERRIDE_BY}' (who) and '{promise.OVERRIDE_REASON}' (why) first")
    only, failed = promise.only_commitment_failed(tags)
    if not only:
        raise OverrideRefused(f"{CLASSIFIER_MODEL} v{version} failed gates {failed or 'none'}: an override "
                              f"only lifts the commitment gate, alone")
    generators = registry.paired_generators(version, settings)
    if not generators:
        raise OverrideRefused(f"{CLASSIFIER_MODEL} v{version} has no complete generator: nothing to promote")
    generator = generators[-1]
    affected = [int(i) for i in tags.get(f"gate.{promise.GATE}.affected_ids", "").split(" ")[0].split(",") if i.isdigit()]
    report = tags.get(f"gate.{promise.GATE}.report")
    if report:  # the full list (a tag holds at most the first few thousand characters of it)
        try:
            affected = json.loads(open(report).read())["affected_ids"]
        except (OSError, ValueError, KeyError):
            log.warning("commitment report %s unreadable: recording the ids on the tag only", report)
    record = {"dataset": tags.get("dataset", ""), "classifier_version": version, "generator_version": generator,
              "by": decision["by"], "reason": decision["reason"],
              "voided_share": float(tags.get(f"gate.{promise.GATE}.figure", "nan")),
              "voided": int(tags.get(f"gate.{promise.GATE}.voided", len(affected))),
              "rescored": int(tags.get(f"gate.{promise.GATE}.rescored", 0)), "affected_ids": affected}
    if registry.champion_versions(settings)[0] == version:
        raise OverrideRefused(f"{CLASSIFIER_MODEL} v{version} is the champion already")
    # Recorded first: a promotion that then fails takes its record back, so the two never disagree.
    ledger = Ledger(ledger_url(settings.home))
    try:
        record_id = ledger.record_override(**record)
        try:
            promote_pair(version, generator, tags.get("data_hash", ""), settings)
        except BaseException:
            ledger.delete_override(record_id)
            raise
    finally:
        ledger.dispose()
    registry.set_tags(CLASSIFIER_MODEL, version, {promise.OVERRIDE_APPLIED: datetime.now(timezone.utc).isoformat()},
                      settings)
    log.warning("commitment gate OVERRIDDEN by %s (%s): classifier v%s + generator v%s promoted, voiding %d of %d "
                "issued recourses", decision["by"], decision["reason"], version, generator, record["voided"],
                record["rescored"])
    out = {**record, "override_id": record_id, "promoted": True}
    if monitor_after:
        from flows.monitor import monitor

        out["monitor"] = monitor(version=version)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Promote a challenger past a failed commitment gate.")
    parser.add_argument("--version", required=True, help="the blocked classifier version")
    parser.add_argument("--by", help=f"who decides (sets the '{promise.OVERRIDE_BY}' tag)")
    parser.add_argument("--reason", help=f"why (sets the '{promise.OVERRIDE_REASON}' tag)")
    args = parser.parse_args(argv)
    if args.by or args.reason:
        if not (args.by and args.reason and args.by.strip() and args.reason.strip()):
            parser.error("--by and --reason go together, neither empty")
        registry.set_tags(CLASSIFIER_MODEL, args.version,
                          {promise.OVERRIDE_BY: args.by.strip(), promise.OVERRIDE_REASON: args.reason.strip()})
    out = override(version=args.version)
    print(json.dumps({k: v for k, v in out.items() if k != "monitor"}, indent=1, default=str))


if __name__ == "__main__":
    from flows.runtime import run_main

    run_main(main)
