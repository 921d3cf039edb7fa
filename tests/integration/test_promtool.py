"""promtool on the deploy files: the alert rules are valid, their unit tests pass, and every
dashboard expression parses as PromQL.

promtool comes from Debian's `prometheus` package (scripts/promtool.sh, run by .ci/run).
Without it the tests skip, except under CI (CI=true), where a missing promtool is a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.conftest import service_unavailable
from tests.unit.test_dashboards import DASHBOARDS, dashboard_expressions

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        service_unavailable("promtool is not installed: scripts/promtool.sh installs it")
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_alert_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", "deploy/prometheus/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", "alerts_test.yml", cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_expressions_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each dashboard expression, with Grafana's variables filled in, as a recording rule:
    `promtool check rules` parses it."""
    rules = []
    for path in DASHBOARDS:
        for i, expr in enumerate(dashboard_expressions(path)):
            if expr.startswith("label_values("):
                continue  # a Grafana function, not PromQL
            expr = expr.replace("$__rate_interval", "5m")
            expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
            rules.append({"record": f"dashboard:{path.stem}:{i}", "expr": expr})
    assert rules
    file = tmp_path / "dashboards.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(file))
    assert result.returncode == 0, result.stdout + result.stderr
