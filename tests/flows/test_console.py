"""What `make run` prints: Prefect's per-task "Completed" lines stay off the console, failures do not."""
from __future__ import annotations

import logging

from flows.runtime import CompletedTaskStates


def _record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_only_completed_task_states_are_dropped():
    keep = CompletedTaskStates().filter
    assert not keep(_record("prefect.task_runs", "Finished in state Completed()"))
    assert keep(_record("prefect.task_runs", "Finished in state Failed('boom')", logging.ERROR))
    assert keep(_record("prefect.task_runs", "classifier h: epoch 25/100: loss 0.4890"))
    assert keep(_record("prefect.flow_runs", "Finished in state Completed()"))


def test_the_console_filter_is_on_prefects_handler_after_quiet_console():
    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.runtime import quiet_console

    quiet_console()
    quiet_console()  # twice: still one filter
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    assert consoles and all(sum(isinstance(f, CompletedTaskStates) for f in h.filters) == 1 for h in consoles)
