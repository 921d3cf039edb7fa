"""An installation made before the data directory was private is narrowed at start-up."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from interlink.storage.private_files import private_sqlite


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_existing_world_readable_database_and_data_directory_are_narrowed(
    tmp_path: Path,
) -> None:
    state = tmp_path / ".interlink"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    db = state / "interlink.db"
    with sqlite3.connect(db) as conn:
        conn.execute("pragma journal_mode=wal")
        conn.execute("create table t (x)")
        for name in ("interlink.db", "interlink.db-wal", "interlink.db-shm"):
            (state / name).chmod(0o644)
        private_sqlite(db)
        assert _mode(state) == 0o700
        for name in ("interlink.db", "interlink.db-wal", "interlink.db-shm"):
            assert _mode(state / name) == 0o600, name


def test_a_new_database_elsewhere_is_made_private_without_touching_its_parents(
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)
    db = tmp_path / "data" / "interlink.db"
    private_sqlite(db)
    assert _mode(db.parent) == 0o700
    assert _mode(db) == 0o600
    assert _mode(tmp_path) == 0o755
