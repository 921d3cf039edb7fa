"""Marked code blocks of the docs, for tests that run them: the README's sh blocks marked
``<!-- readme-test: NAME -->``, docs/services.md's blocks marked
``<!-- services-test: NAME -->`` and docs/routing.md's ``<!-- routing-test: NAME -->``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SERVICES = ROOT / "docs" / "services.md"
ROUTING = ROOT / "docs" / "routing.md"


def doc_block(doc: Path, marker: str, name: str, lang: str) -> str:
    """The text of the ``lang`` block right after ``<!-- MARKER: NAME -->`` in ``doc``."""
    text = doc.read_text()
    match = re.search(rf"<!-- {marker}: {name} -->\n```{lang}\n(.*?)```", text, re.S)
    assert match, f"no {marker} block {name!r} ({lang}) in {doc.name}"
    return match.group(1)


def readme_block(name: str) -> list[str]:
    """The lines of the sh block after the marker, with backslash continuations joined."""
    return doc_block(README, "readme-test", name, "sh").replace("\\\n", " ").splitlines()


def services_block(name: str, lang: str) -> str:
    return doc_block(SERVICES, "services-test", name, lang)


def routing_block(name: str) -> Any:
    """docs/routing.md's JSON block after ``<!-- routing-test: NAME -->``, decoded."""
    return json.loads(doc_block(ROUTING, "routing-test", name, "json"))


def venv_here(directory: Path, python: str) -> None:
    """Make ``.venv/bin/…`` in ``directory`` the running interpreter's, as in a checkout."""
    (directory / ".venv").mkdir(exist_ok=True)
    (directory / ".venv" / "bin").symlink_to(Path(python).parent)


def run_readme_block(
    name: str, directory: Path, base_url: str, api_key: str
) -> tuple[list[Any], str]:
    """Runs the README's block ``name`` as a user would, in ``directory`` (a checkout's
    ``.venv`` there), against Interlink at ``base_url`` with a tenant's key; answers the JSON
    values it printed, in order (curl ends its answers without a newline), and its stderr."""
    venv_here(directory, sys.executable)
    script = "\n".join(["set -euo pipefail", *readme_block(name)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLINK_")}
    env |= {"INTERLINK_API_KEY": api_key, "INTERLINK_API_URL": base_url}
    done = subprocess.run(
        ["bash", "-c", script.replace("http://127.0.0.1:8400", base_url)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    decoder, text, answers = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        value, end = decoder.raw_decode(text)
        answers.append(value)
        text = text[end:].strip()
    return answers, done.stderr
