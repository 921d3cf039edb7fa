"""The test tree's own rule: tests/unit and tests/integration are not packages, so pytest
imports their modules by file name, and two files of one name in them break every run that
collects both (``import file mismatch``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent.parent


def test_no_two_test_modules_share_a_name_outside_packages() -> None:
    names = Counter(
        path.name
        for folder in ("unit", "integration")
        for path in (TESTS / folder).glob("*.py")
        if path.name != "conftest.py"
    )
    assert not [name for name, n in names.items() if n > 1]
