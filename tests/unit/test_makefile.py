"""`make`'s install says what it is doing: a line before each step, pip not silenced."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def _recipe(target: str) -> list[str]:
    text = MAKEFILE.read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n|  .*\n)+)", text, re.M)
    assert match, target
    return match.group(1).splitlines()


def test_every_install_step_is_announced_and_the_long_one_is_not_quiet() -> None:
    steps = _recipe("$(STAMP)")
    for i, line in enumerate(steps):
        is_step = "pip install" in line or "-m venv $(VENV)" in line
        if is_step and "echo" not in line:
            assert "echo" in steps[i - 1], f"no line announces: {line.strip()}"
    main = next(line for line in steps if "pip install" in line and "-e '.[dev]'" in line)
    assert "--quiet" not in main and "-q " not in main
    assert "--progress-bar off" in main
