"""Replaying the spool after every successful serving write must not rewrite it when it holds nothing to replay."""
import json

from tasks.ledger import spool


def _line(ledger: str, key: str) -> str:
    return json.dumps({"key": key, "issued": None, "served": {"request_id": key, "row": 1, "answered_at": "2026-11-29T00:00:00+00:00"}, "ledger": ledger})


def test_replay_leaves_other_ledgers_rows_untouched_and_removes_an_emptied_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRE_HOME", str(tmp_path))
    mine, other = "sqlite:///mine.db", "sqlite:///other.db"
    path = spool.spool_path()
    path.parent.mkdir(parents=True)
    path.write_text(_line(spool.ledger_name(other), "a") + "\n")
    inode = path.stat().st_ino
    calls = []
    counts = spool.replay(mine, lambda rows: calls.append(rows) or (len(rows), 0))
    assert calls == [] and counts["left_for_other_ledgers"] == 1
    assert path.stat().st_ino == inode  # not rewritten (a rewrite renames a new file into place)

    with open(path, "a") as fh:
        fh.write(_line(spool.ledger_name(mine), "b") + "\n")
    counts = spool.replay(mine, lambda rows: (len(rows), 0))
    assert counts["replayed"] == 1 and spool.pending(other) == 1 and spool.pending(mine) == 0

    counts = spool.replay(other, lambda rows: (len(rows), 0))
    assert counts["replayed"] == 1 and not path.exists()  # emptied: removed, so later replays return at once
    assert spool.replay(mine, lambda rows: (len(rows), 0))["replayed"] == 0
