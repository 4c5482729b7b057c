"""`genre ledger replay`: write the serving ledger's spooled rows to its database, exactly once.

The spool (`GENRE_HOME/serving/ledger-spool.jsonl`) holds the rows of answers given while the ledger could
not be written; the server also replays it at its next successful write. The registry and GENRE_HOME are
found as for `genre recourse` (the state `tasks.home` resolves: GENRE_HOME, or the story `make run` last finished).
"""
from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    replay = sub.add_parser("replay", help="write spooled ledger rows to the database (each once)")
    replay.add_argument("--url", default=None, help="ledger database URL (default GENRE_LEDGER_URL or "
                                                    "sqlite:///$GENRE_HOME/ledger.db)")


def main(args: argparse.Namespace) -> int:
    from tasks.ledger import spool as ledger_spool
    from tasks.ledger.db import ledger_url
    from tasks.serving.serve import resolve_registry
    from tasks.ledger.recorder import ServingLedger

    resolve_registry()  # the state every entry point uses, so GENRE_HOME (and its spool) is the served one
    url = args.url or ledger_url()
    waiting = ledger_spool.pending(url)
    try:
        counts = ServingLedger(url).replay(wait=True)
    except Exception as exc:
        raise RuntimeError(f"the ledger {ledger_spool.ledger_name(url)} still cannot be written ({exc}); "
                           f"{waiting} rows stay spooled in {ledger_spool.spool_path()}") from exc
    print(json.dumps(counts))
    print(f"ledger {ledger_spool.ledger_name(url)}: {counts['replayed']} spooled rows written, "
          f"{counts['already_recorded']} were there already; {ledger_spool.pending()} rows left in {counts['spool']}")
    return 0
