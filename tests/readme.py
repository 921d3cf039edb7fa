"""Marked code blocks of the docs, for tests that run them: the README's sh blocks marked
``<!-- readme-test: NAME -->`` and docs/services.md's blocks marked
``<!-- services-test: NAME -->``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SERVICES = ROOT / "docs" / "services.md"


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


def venv_here(directory: Path, python: str) -> None:
    """Make ``.venv/bin/…`` in ``directory`` the running interpreter's, as in a checkout."""
    (directory / ".venv").mkdir(exist_ok=True)
    (directory / ".venv" / "bin").symlink_to(Path(python).parent)
