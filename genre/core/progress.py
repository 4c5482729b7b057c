"""Progress of a training loop: a tqdm bar on a terminal, a few summary lines anywhere else.

A bar redrawn in a log file or a pipe (`make run > log`, CI, a Prefect worker) is hundreds of lines of
carriage returns; there the loop reports at a quarter, half, three quarters and its end instead.

    bar = epochs(n, "classifier h", progress)   # progress: False, True, or a callable taking each line
    for epoch in bar:
        ...
        bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()                                # reports where an early-stopped loop ended
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Union

from tqdm.auto import tqdm

Progress = Union[bool, Callable[[str], None]]
log = logging.getLogger("genre.core.progress")


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def epochs(total: int, desc: str, progress: Progress, *, lines: int = 4):
    """An iterable over range(total) with `set_postfix` and `close`: a bar, summary lines, or silence."""
    if not progress:
        return SummaryLines(total, desc, report=None)
    if progress is True and is_terminal():
        return tqdm(range(total), desc=desc, leave=False)
    return SummaryLines(total, desc, report=progress if callable(progress) else log.info, lines=lines)


class SummaryLines:
    """Report `lines` times over the loop (evenly spaced, the last at its end) with the latest postfix."""

    def __init__(self, total: int, desc: str, report: Callable[[str], None] | None, lines: int = 4):
        self.total, self.desc, self.report = total, desc, report
        self.marks = {max(1, round(total * (i + 1) / lines)) for i in range(lines)} if lines and total else set()
        self.done, self.postfix, self._last = 0, {}, 0

    def __iter__(self):
        for i in range(self.total):
            self.done = i + 1  # counted once its body has run (or broken out of the loop)
            yield i
            if self.done in self.marks:
                self._emit()

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.done and self.done != self._last:  # stopped early: say where
            self._emit(early=True)

    def _emit(self, early: bool = False) -> None:
        self._last = self.done
        if self.report is None:
            return
        figures = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        stop = " (stopped early)" if early and self.done < self.total else ""
        self.report(f"{self.desc}: epoch {self.done}/{self.total}{stop}{': ' + figures if figures else ''}")
