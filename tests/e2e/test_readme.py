"""The README's "Using it" and curl blocks, run as written by bash against a real `interlink up
--detach` (only the placeholders a reader fills in are filled in from what was printed)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import free_port
from tests.readme import readme_block, venv_here

PY = sys.executable


def _field(path: str) -> str:
    """A shell command substitution printing one field of the last command's JSON output."""
    lookup = "".join(f"[{p!r}]" if not p.isdigit() else f"[{p}]" for p in path.split("."))
    return f"$({PY} -c \"import json; print(json.load(open('last.json')){lookup})\")"


def using_it_script(port: int) -> str:
    lines = ["set -euo pipefail"]
    for line in readme_block("using-it"):
        command = re.sub(r"\s+# .*$", "", line).strip()
        if command == "export INTERLINK_API_KEY=ik_...":
            lines.append(f"export INTERLINK_API_KEY={_field('api_key')}")
        elif command == "export SOURCE=src_... SECRET=whsec_...":
            lines.append(f"export SOURCE={_field('source.id')} SECRET={_field('secrets.0')}")
        elif command.endswith("events tail"):
            lines.append(f"timeout 3 {command} > tail.txt || true")
        elif command.startswith("export "):
            lines.append(command)
        else:
            if "ep_..." in command:
                lines.append(f"EP={_field('endpoint.id')}")
                command = command.replace("ep_...", "$EP")
            lines.append(f"{command} | tee last.json")
    # What the reader keeps in their shell for the curl block.
    lines.append('echo; echo "SOURCE=$SOURCE"; printf %s "$SECRET" > secret.txt')
    return "\n".join(lines).replace("127.0.0.1:8400", f"127.0.0.1:{port}")


def test_the_readme_first_hour_runs_as_written(tmp_path: Path) -> None:
    # The README calls .venv/bin/interlink from the checkout; here the test's own venv.
    venv_here(tmp_path, PY)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")},
        "INTERLINK_PORT": str(port),
    }
    try:
        done = subprocess.run(
            ["bash", "-c", using_it_script(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert f"Interlink on http://127.0.0.1:{port}" in out and "pid" in out
        sent = [json.loads(line) for line in out.splitlines() if line.startswith('{"id"')]
        assert len(sent) == 1 and sent[0]["duplicate"] is False, out
        assert "follow it: interlink events timeline evt_" in done.stderr
        assert f"{sent[0]['id']}  " in out  # a row of `events list --output table`
        assert (tmp_path / "tail.txt").exists()

        # The curl + openssl block, with SOURCE and SECRET as `sources create` printed them.
        source = re.search(r"SOURCE=(src_\w+)", out)
        assert source, out
        curl = "\n".join(readme_block("curl")).replace("127.0.0.1:8400", f"127.0.0.1:{port}")
        script = f"set -euo pipefail\nSECRET=$(cat secret.txt)\n{curl}"
        answer = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env={**env, "SOURCE": source.group(1)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert answer.returncode == 0, answer.stderr
        accepted = json.loads(answer.stdout)
        assert accepted["duplicate"] is False and accepted["id"].startswith("evt_")
    finally:
        pid_file = tmp_path / ".interlink" / "interlink.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
