"""The data directory and the SQLite database hold secrets: private to the owner from creation.

Directories are made 0700 and files 0600 by the call that creates them (never widened first and
narrowed after). SQLite makes the database's -wal and -shm files with the database file's own
mode, so creating that file 0600 before SQLite opens it covers them too. An existing
``.interlink`` directory, and an existing database and its -wal/-shm, are narrowed at start-up:
installations made before this were created world-readable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

STATE_DIR_NAME = ".interlink"


def private_dir(path: Path) -> None:
    """Makes ``path`` (and missing parents) 0700; an existing ``.interlink`` is narrowed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.name == STATE_DIR_NAME:
        _narrow(path, 0o700)


def private_sqlite(path: Path) -> None:
    """Creates the database file 0600 before SQLite opens it; narrows an existing one."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}.lock"):
        _narrow(path.with_name(name), 0o600)


def create_private_file(path: Path) -> int:
    """Opens a new file 0600 for writing (FileExistsError if it exists); its descriptor."""
    private_dir(path.parent)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def narrow_private_file(path: Path) -> None:
    """An existing private file (a key file), narrowed to 0600 if it is wider."""
    _narrow(path, 0o600)


def _narrow(path: Path, mode: int) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and st.st_mode & 0o777 & ~mode:
        path.chmod(st.st_mode & 0o777 & mode)
