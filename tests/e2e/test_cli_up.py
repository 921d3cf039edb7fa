"""`interlink up` as a process: the banner only once it listens, `--detach` and `wait`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import free_port

INTERLINK = str(Path(sys.executable).parent / "interlink")


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")}
    return {**clean, **extra}


def _run(
    cwd: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTERLINK, *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_no_banner_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _run(tmp_path, "up", "--port", port)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
        assert "--port / INTERLINK_PORT" in done.stderr  # what to change
        assert "Interlink on" not in done.stdout

        detached = _run(tmp_path, "up", "--detach", "--port", port)
        assert detached.returncode == 1
        assert "before it was ready" in detached.stderr
        assert "address already in use" in detached.stderr  # the log's tail says why


def test_detach_returns_ready_and_a_second_up_says_why_it_cannot(tmp_path: Path) -> None:
    port = str(free_port())
    started = time.monotonic()
    detached = _run(tmp_path, "up", "--detach", "--port", port)
    pid_file = tmp_path / ".interlink" / "interlink.pid"
    try:
        assert detached.returncode == 0, detached.stderr
        assert f"Interlink on http://127.0.0.1:{port}" in detached.stdout
        assert "logs in .interlink/interlink.log" in detached.stdout
        pid = int(pid_file.read_text())
        assert f"pid {pid}" in detached.stdout
        # Ready means ready: the admin key is there and the API answers at once.
        key = (tmp_path / ".interlink" / "admin.key").read_text().strip()
        listed = _run(tmp_path, "tenants", "list", INTERLINK_PORT=port)
        assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
        assert key.startswith("ik_admin_")
        assert time.monotonic() - started < 60

        waited = _run(tmp_path, "wait", "--timeout", "5", INTERLINK_PORT=port)
        assert waited.returncode == 0 and "is ready" in waited.stdout

        # The same directory's database is locked: refused, and no banner before the refusal.
        second = _run(tmp_path, "up", "--port", str(free_port()))
        assert second.returncode == 1
        assert "another Interlink process" in second.stderr
        assert "Interlink on" not in second.stdout
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_wait_gives_up_after_its_timeout(tmp_path: Path) -> None:
    port = str(free_port())
    started = time.monotonic()
    done = _run(tmp_path, "wait", "--timeout", "1", INTERLINK_API_URL=f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"Interlink at http://127.0.0.1:{port} not ready after 1 s" in done.stderr
    assert time.monotonic() - started < 30
