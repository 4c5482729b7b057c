"""Every kind of bad batch in one real ingest run: each is quarantined (or reported) with its cause named,
the good batch queued behind them is ingested, and no input file is lost.

Real files, a real FIFO, a real process holding a file open for writing, and a file deleted by another
thread while the run is under way; the real data contract and Prefect flow.
"""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genre.core.datasets import get_spec, load_split
from tasks.registry import client as registry
from tasks.data import store
from tasks.settings import PipelineSettings

pytestmark = pytest.mark.slow

SPEC = get_spec("compas")


def _csv(frame) -> str:
    return frame.to_csv(index=False)


def _replace_cell(text: str, row: int, column: str, value: str) -> str:
    lines = text.split("\n")
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines)


def _bad_batches(train) -> dict[str, tuple[bytes | None, list[str]]]:
    """name -> (content, words the reason must contain). None content: made specially below."""
    base = _csv(train.iloc[:100])
    lines = base.split("\n")
    out: dict[str, tuple[bytes | None, list[str]]] = {
        "01-bad-utf8.csv": (_replace_cell(base, 3, "sex", "MA").encode().replace(b"MA", b"Ma\xff\xfele"),
                            ["row 3 (line 4)", "column 'sex'", "not UTF-8", "Ma\\xff\\xfele"]),
        "02-ragged-row.csv": ("\n".join(lines[:5] + [lines[5] + ",7"] + lines[6:]).encode(),
                              ["row 5 (line 6)", "9 fields where the header has 8"]),
        "03-short-row.csv": ("\n".join(lines[:4] + [lines[4].rsplit(",", 1)[0]] + lines[5:]).encode(),
                             ["row 4 (line 5)", "7 fields where the header has 8"]),
        "04-gzip.csv": (gzip.compress(base.encode()), ["binary data", "gzip"]),
        "05-nul-bytes.csv": (base.encode()[:200] + b"\x00\x01\x02" * 50, ["binary data", "NUL byte"]),
        "06-directory.csv": (None, ["a directory"]),
        "07-empty.csv": (b"", ["empty", "0 bytes"]),
        "08-header-only.csv": (lines[0].encode() + b"\n", ["expect_table_row_count_to_be_between"]),
        "09-semicolon.csv": (base.replace(",", ";").encode(), ["';'-separated", "comma-separated"]),
        "10-missing-column.csv": (_csv(train.iloc[:100].drop(columns=["sex"])).encode(), ["missing ['sex']"]),
        "11-extra-column.csv": (_csv(train.iloc[:100].assign(note="x")).encode(), ["unexpected ['note']"]),
        "12-duplicate-header.csv": (base.replace("priors_count", "age", 1).encode(), ["column 'age' twice"]),
        "13-unknown-category.csv": (_replace_cell(base, 6, "race", "Martian").encode(), ["'race'", "'Martian'"]),
        "14-text-in-number.csv": (_replace_cell(base, 6, "priors_count", "abc").encode(),
                                  ["'priors_count'", "'abc' is not a number"]),
        "15-empty-cell.csv": (_replace_cell(base, 2, "age", "").encode(), ["'age'", "row 2 (line 3)", "empty"]),
        "16-out-of-range.csv": (_replace_cell(base, 7, "length_of_stay", "99999").encode(),
                                ["'length_of_stay'", "'99999'"]),
        "17-huge-number.csv": (_replace_cell(base, 7, "age", "1e308").encode(), ["'age'", "'1e308'"]),
        "18-bad-target.csv": (_replace_cell(base, 8, "score", "2").encode(), ["'score'", "row 8"]),
        "19-fraction.csv": (_replace_cell(base, 4, "age", "33.5").encode(), ["'age'", "'33.5' is not a whole number"]),
        "20-too-few-rows.csv": (_csv(train.iloc[:5]).encode(), ["expect_table_row_count_to_be_between"]),
        "21-appended-twice.csv": ((base + "\n".join(lines[1:])).encode(), ["expect_compound_columns_to_be_unique"]),
        "22-unterminated-quote.csv": (_replace_cell(base, 9, "race", '"Other').encode(),
                                      ["row 9 (line 10)", "not valid CSV", "never closed"]),
        "23-dangling-link.csv": (None, ["symbolic link", "does not exist"]),
        "24-fifo.csv": (None, ["not a regular file"]),
    }
    return out


WRITER = """
import sys
path, source = sys.argv[1], sys.argv[2]
text = open(source).read()
with open(path, "w") as fh:
    fh.write(text[: len(text) // 2])
    fh.flush()
    print("ready", flush=True)
    sys.stdin.readline()  # the test says when to finish
    fh.write(text[len(text) // 2:])
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_harness, pipeline_home):
    from flows.ingest import ingest

    home = tmp_path_factory.mktemp("bad-batches")
    train = load_split(SPEC, "train")
    with pipeline_home(home, {}):
        settings = PipelineSettings.from_env()
        incoming = settings.incoming(SPEC.name)
        incoming.mkdir(parents=True)
        expected = _bad_batches(train)
        for name, (content, _) in expected.items():
            if content is not None:
                (incoming / name).write_bytes(content)
        (incoming / "06-directory.csv").mkdir()
        (incoming / "06-directory.csv" / "part-0.csv").write_text(_csv(train.iloc[:50]))
        (incoming / "23-dangling-link.csv").symlink_to(home / "no-such-export.csv")
        os.mkfifo(incoming / "24-fifo.csv")
        # Someone else takes this file away while the run works through the files before it.
        (incoming / "25-vanishing.csv").write_text(_csv(train.iloc[100:200]))
        # A real process is still writing this one: half of a valid batch so far.
        source = home / "later-batch.csv"
        source.write_text(_csv(train.iloc[300:400]))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(incoming / "26-being-written.csv"), str(source)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        # The good batch queued behind all of them.
        (incoming / "zz-good.csv").write_text(_csv(train.iloc[1000:1400]))
        sent = {p.name: (p.read_bytes() if p.is_file() and not p.is_fifo() else None) for p in incoming.iterdir()}

        quarantine = settings.quarantine(SPEC.name)

        def take_away():  # once the run is past its second file, delete the 25th
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not list(quarantine.glob("*-02-ragged-row.csv.summary.md")):
                time.sleep(0.005)
            (incoming / "25-vanishing.csv").unlink()

        thief = threading.Thread(target=take_away, daemon=True)
        thief.start()
        try:
            first = {o["file"]: o for o in ingest(dataset=SPEC.name)}
            thief.join(timeout=5)
            after_first = sorted(p.name for p in incoming.iterdir())
            writer.stdin.write("go\n")
            writer.stdin.close()
            assert writer.wait(timeout=30) == 0
            second = {o["file"]: o for o in ingest(dataset=SPEC.name)}
        finally:
            if writer.poll() is None:
                writer.kill()
        yield settings, expected, sent, first, after_first, second, source


def test_every_bad_batch_is_quarantined_with_its_cause_named(run):
    settings, expected, sent, first, *_ = run
    for name, (_, words) in expected.items():
        outcome = first[name]
        assert outcome["status"] == "quarantined", (name, outcome)
        summary = Path(outcome["summary"]).read_text()
        root = summary.split("**Root cause**: ", 1)[1].split("\n", 1)[0]
        # The summary leads with the root cause, and the outcome says the same.
        assert root == outcome["reason"], (name, root, outcome["reason"])
        assert all(w in root for w in words), (name, root)
    assert len(expected) >= 15


def test_the_good_batch_behind_them_is_ingested(run):
    settings, _, _, first, *_ = run
    assert first["zz-good.csv"]["status"] == "ingested" and first["zz-good.csv"]["rows"] == 400
    assert [b["source"] for b in store.manifest(settings.store(SPEC.name))][0] == "zz-good.csv"


def test_a_vanished_file_is_reported_and_a_file_being_written_waits_for_the_next_run(run):
    settings, _, _, first, after_first, second, source = run
    assert first["25-vanishing.csv"]["status"] == "vanished"
    assert "disappeared" in first["25-vanishing.csv"]["reason"]
    assert first["26-being-written.csv"]["status"] == "deferred"
    assert "still open for writing by process" in first["26-being-written.csv"]["reason"]
    assert after_first == ["26-being-written.csv"]  # everything else left incoming
    # Once its writer closed it, the next run ingests the whole file, not the half it saw first.
    assert second["26-being-written.csv"]["status"] == "ingested" and second["26-being-written.csv"]["rows"] == 100
    archived = Path(second["26-being-written.csv"]["archived"])
    assert archived.read_bytes() == source.read_bytes()


def test_no_input_file_is_lost_and_the_champion_is_untouched(run):
    settings, expected, sent, first, _, second, _ = run
    for name, content in sent.items():
        if name == "25-vanishing.csv":
            continue  # deleted by someone else: reported above
        outcome = second.get(name) if name == "26-being-written.csv" else first[name]
        kept = Path(outcome.get("quarantined_to") or outcome.get("archived"))
        assert os.path.lexists(kept), name
        if content is not None and name != "26-being-written.csv":
            assert kept.read_bytes() == content, name
    assert (Path(first["06-directory.csv"]["quarantined_to"]) / "part-0.csv").exists()
    assert os.readlink(first["23-dangling-link.csv"]["quarantined_to"]).endswith("no-such-export.csv")
    assert registry.champion_versions(settings) == (None, None)

