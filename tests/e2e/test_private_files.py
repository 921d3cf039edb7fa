"""The data directory and the database files of ``interlink up`` are private to the owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .conftest import _PROCESSES, InterlinkProcess, free_port

pytestmark = pytest.mark.e2e


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_directory_and_database_files_are_private(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    workdir = tmp_path / "interlink"
    workdir.mkdir()
    process = InterlinkProcess(workdir, free_port())
    request.node.stash.setdefault(_PROCESSES, []).append(process)
    # A permissive umask, as on most machines: privacy must not depend on the user's.
    saved = os.umask(0o022)
    try:
        process.spawn()
    finally:
        os.umask(saved)
    try:
        await process.wait_healthy()
        state = workdir / ".interlink"
        db = state / "interlink.db"
        # The write-ahead log and its index exist while the process runs.
        assert (state / "interlink.db-wal").exists()
        assert (state / "interlink.db-shm").exists()
        assert _mode(state) == 0o700
        files = {p.name: _mode(p) for p in state.iterdir()}
        assert db.name in files and "secrets.key" in files, files
        assert all(mode == 0o600 for mode in files.values()), {k: oct(v) for k, v in files.items()}
    finally:
        assert process.stop() == 0
