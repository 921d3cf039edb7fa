"""The README's shell blocks marked ``<!-- readme-test: NAME -->``, for tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(name: str) -> list[str]:
    """The lines of the sh block after the marker, with backslash continuations joined."""
    text = README.read_text()
    match = re.search(rf"<!-- readme-test: {name} -->\n```sh\n(.*?)```", text, re.S)
    assert match, f"no readme-test block {name!r} in the README"
    return match.group(1).replace("\\\n", " ").splitlines()


def venv_here(directory: Path, python: str) -> None:
    """Make ``.venv/bin/…`` in ``directory`` the running interpreter's, as in a checkout."""
    (directory / ".venv").mkdir(exist_ok=True)
    (directory / ".venv" / "bin").symlink_to(Path(python).parent)
