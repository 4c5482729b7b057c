"""Alerts on a quarantined batch, detected drift, failed recourse tests and a failed run, sent through a Prefect notification block.

Which block: `GENRE_NOTIFY_BLOCK` as "<block-type-slug>/<block-name>" names any notification block saved on
the Prefect server (a Slack or custom webhook, e-mail, ...: `prefect block ls`). Unset, the alerts go to
`AlertLog`, a notification block that appends one JSON line per alert to `GENRE_HOME/alerts.jsonl`: it works
offline and a test can read what was sent. `make deploy` saves one as `genre-alert-log/genre-alerts` and points
the deployments at it, so it shows in the Prefect UI, where it can be swapped for a webhook.

An alert that cannot be sent is logged as a warning and never fails the flow that raised it.

    python -m tasks.notify register --name genre-alerts   # save an AlertLog block on the current Prefect API
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from prefect.blocks.abstract import NotificationBlock
from pydantic import Field

BLOCK_ENV = "GENRE_NOTIFY_BLOCK"
ALERTS_FILE = "alerts.jsonl"
QUARANTINE, DRIFT, RECOURSE, FAILURE = "quarantine", "drift", "recourse-tests", "failure"
log = logging.getLogger(__name__)


class AlertLog(NotificationBlock):
    """Append each notification as a JSON line (time, subject, body) to a file."""

    _block_type_name = "Genre Alert Log"
    _block_type_slug = "genre-alert-log"

    path: str = Field(default="", description=f"JSON-lines file; empty: $GENRE_HOME/{ALERTS_FILE} when sent")

    def target(self) -> Path:
        return Path(self.path) if self.path else default_alerts_file()

    def notify(self, body: str, subject: str | None = None) -> None:  # type: ignore[override]
        target = self.target()
        target.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": datetime.now(timezone.utc).isoformat(), "subject": subject, "body": body})
        with open(target, "a", encoding="utf-8") as out:  # one short append: whole lines, even from two processes
            out.write(line + "\n")

    async def anotify(self, body: str, subject: str | None = None) -> None:
        self.notify(body, subject)


def default_alerts_file() -> Path:
    return Path(os.environ.get("GENRE_HOME", ".genre")).resolve() / ALERTS_FILE


def alert_block() -> NotificationBlock:
    """The block named by GENRE_NOTIFY_BLOCK, else an AlertLog on GENRE_HOME/alerts.jsonl."""
    name = os.environ.get(BLOCK_ENV, "").strip()
    if not name:
        return AlertLog()
    from prefect.blocks.core import Block

    return Block.load(name)


def send(kind: str, subject: str, body: str) -> bool:
    """Send one alert; False (and a warning in the log) when it could not be sent."""
    try:
        block = alert_block()
        block.notify(body=body, subject=f"[genre] {kind}: {subject}")
    except Exception as exc:  # an alert must never fail the flow that raised it
        _logger().warning("could not send the %s alert %r through %s: %r", kind, subject,
                          os.environ.get(BLOCK_ENV) or "the alert log", exc)
        return False
    _logger().info("alert sent (%s): %s", kind, subject)
    return True


def on_failure(flow, flow_run, state) -> None:
    """Prefect flow hook (`@flow(on_failure=[on_failure])`): alert that a run failed, and why."""
    send(FAILURE, f"flow run {flow_run.name} ({flow.name}) failed",
         f"{state.message or state.name}\nflow run id: {flow_run.id}")


def _logger():
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save an AlertLog notification block on the Prefect API.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("command", choices=["register"])
    parser.add_argument("--name", default="genre-alerts", help="block document name")
    parser.add_argument("--path", default=str(default_alerts_file()), help="file the alerts are appended to")
    args = parser.parse_args(argv)
    AlertLog(path=args.path).save(args.name, overwrite=True)
    print(f"saved notification block genre-alert-log/{args.name} -> {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
