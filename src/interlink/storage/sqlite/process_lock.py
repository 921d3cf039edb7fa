"""The embedded default is one process: an exclusive lock on ``<db>.lock`` says who it is.

Held by ``interlink up`` for its whole life (which is what lets it release every lease of a
crashed predecessor at start-up) and taken by ``interlink restore`` while it replaces the file.
The lock is the kernel's (``flock``): a killed holder releases it with its last descriptor.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from interlink.storage.private_files import private_dir

__all__ = ["AlreadyRunning", "lock_sqlite"]


class AlreadyRunning(RuntimeError):
    pass


def lock_sqlite(path: Path) -> IO[str]:
    """The lock on the database at ``path``; held until the returned handle is closed."""
    private_dir(path.parent)
    lock = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    handle = os.fdopen(lock, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(
            f"another Interlink process is running on {path}; the embedded default is one "
            "process (use PostgreSQL to run several)"
        ) from None
    return handle
