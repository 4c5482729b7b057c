"""Files written atomically: the bytes go to a temporary name beside the target, then one `os.replace` puts
them under the real name, so a reader (or the next run after a kill) never sees half a file there."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends, it replaces `path` in one step.

    The parent folder is made first. If the block raises, the temporary file is removed and `path` keeps
    what it held. The temporary name starts with a dot and ends in `.<pid>.tmp`, so a glob for the real
    suffix never matches it and two processes writing the same file do not share one. A writer that picks
    its format from the file name (matplotlib, pandas' compression) must be told the format instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """`text` written atomically to `path`; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data, *, indent: int = 1, **dumps) -> Path:
    """`json.dumps(data, indent=indent, **dumps)` written atomically to `path`; returns the path."""
    return write_text(path, json.dumps(data, indent=indent, **dumps))
