"""The dashboards and alert rules use only metrics Interlink exports.

Every PromQL expression in deploy/grafana/*.json (panel targets and variable queries) and in
deploy/prometheus/alerts.yml is scanned for ``interlink_*`` names; each must be a series that
observability/metrics.py registers, with the suffixes its type adds (_total for counters,
_bucket/_sum/_count for histograms).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlink.observability.metrics import Metrics, StateCollector
from interlink.storage.database import Database

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
NAME = re.compile(r"\binterlink_[A-Za-z0-9_:]*")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def exported() -> set[str]:
    metrics = Metrics()
    families = list(metrics.registry.collect())
    families += list(StateCollector(Database("sqlite:///:memory:")).describe())
    names: set[str] = set()
    for family in families:
        for suffix in SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return {n for n in names if n.startswith("interlink_")}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_expressions(path: Path) -> list[str]:
    board = json.loads(path.read_text())
    out = []
    for node in _walk(board):
        if isinstance(node.get("expr"), str):
            out.append(node["expr"])
        if node.get("type") == "query" and isinstance(node.get("definition"), str):
            out.append(node["definition"])
    return out


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [str(rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def test_the_deploy_files_exist() -> None:
    assert {p.name for p in DASHBOARDS} >= {"engineering.json", "partnerships.json"}
    assert ALERTS.exists()


def test_the_exported_names_are_what_metrics_py_registers() -> None:
    names = exported()
    assert "interlink_ingest_requests_total" in names
    assert "interlink_ingest_ack_seconds_bucket" in names
    assert "interlink_delivery_backlog" in names
    assert "interlink_source_volume_dropped" in names
    # No suffix is doubled (a counter named *_total would export *_total_total).
    assert not [n for n in names if n.endswith("_total_total")]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_metric_in_a_dashboard_is_exported(path: Path) -> None:
    names = exported()
    expressions = dashboard_expressions(path)
    assert expressions, f"{path.name} has no PromQL"
    for expr in expressions:
        used = set(NAME.findall(expr))
        # An expression naming no interlink_ metric at all is a typo'd one (or not ours).
        assert used, f"{path.name}: no interlink metric in {expr!r}"
        assert used <= names, f"{path.name}: {sorted(used - names)} not exported ({expr!r})"


def test_every_metric_in_the_alert_rules_is_exported() -> None:
    names = exported()
    expressions = rule_expressions()
    assert len(expressions) >= 6
    for expr in expressions:
        used = set(NAME.findall(expr))
        assert used, f"no interlink metric in {expr!r}"
        assert used <= names, f"{sorted(used - names)} not exported ({expr!r})"


def test_alert_rules_have_severity_and_summary() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_importable(path: Path) -> None:
    """What Grafana needs to import a dashboard: a uid, unique panel ids, a datasource each."""
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
