"""Files written whole or not at all: a reader of the path sees the old file or the complete new one,
never a half-written one, and an interrupted write (Ctrl-C, a killed process, a full disk) leaves
the old file, or none, in place."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Calls `write` with a binary file beside `path` (created with the usual permissions, as `open`
    makes them), flushes it to disk and renames it to `path`; the parent folder is created if needed.
    On any error the partial file is removed and the error propagates. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(partial, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
