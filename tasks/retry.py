"""Which failures a Prefect task retries: a lost connection or a locked database may pass, a permanent error
(no champion yet, a bad input file, a model for another data set) never does, so the run fails at once and
says why instead of repeating the same error (issue 12)."""
from __future__ import annotations

from genre.core.datasets import DataError


class PermanentError(RuntimeError):
    """An error that retrying cannot mend (the state or the input must change first)."""


# ValueError covers bad parameters and a model of another data set; LookupError a missing registry entry;
PERMANENT = (PermanentError, DataError, FileNotFoundError, IsADirectoryError, ValueError, LookupError, TypeError,
             ImportError)  # ImportError: e.g. a model pickled under a module path that no longer exists


def transient_only(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry unless the task failed with a permanent error."""
    error = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(error, PERMANENT)
