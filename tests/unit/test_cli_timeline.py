"""`interlink events timeline EVENT_ID`: asks the API and prints one readable line per step."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from interlink import cli
from interlink.cli import _api

TIMELINE: dict[str, Any] = {
    "event_id": "evt_1",
    "steps": [
        {
            "step": "received",
            "at": "2026-01-05T10:00:00Z",
            "source_id": "src_1",
            "source_name": "pms",
            "verifier": "standard_webhooks",
            "signature_headers": "webhook-*",
            "type": "booking.created",
            "idempotency_key": "msg_1",
        },
        {
            "step": "routed",
            "at": "2026-01-05T10:00:00.010Z",
            "delivery_id": "dlv_1",
            "endpoint_id": "ep_1",
            "endpoint_url": "https://example.com/hooks",
        },
        {
            "step": "attempt",
            "at": "2026-01-05T10:00:00.020Z",
            "delivery_id": "dlv_1",
            "endpoint_id": "ep_1",
            "number": 1,
            "outcome": "error",
            "status_code": None,
            "latency_ms": 15000.0,
            "error": "timed out",
        },
        {
            "step": "delivery_state",
            "at": "2026-01-05T10:00:15Z",
            "delivery_id": "dlv_1",
            "endpoint_id": "ep_1",
            "status": "scheduled",
            "attempt_count": 1,
            "next_attempt_at": "2026-01-05T10:00:20Z",
        },
    ],
}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v1/events/evt_1/timeline":
            return httpx.Response(200, json=TIMELINE)
        return httpx.Response(404, json={"detail": "no event 'evt_nope'"})

    def client(config: str | None, admin: bool = False) -> httpx.Client:
        return httpx.Client(base_url="http://interlink", transport=httpx.MockTransport(handler))

    monkeypatch.setattr(_api, "client", client)
    return seen


def test_prints_one_line_per_step(api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["events", "timeline", "evt_1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "event evt_1"
    assert "received" in lines[1] and "booking.created from src_1 (pms)" in lines[1]
    assert "verified by standard_webhooks via webhook-*" in lines[1]
    assert "dlv_1 -> ep_1 https://example.com/hooks" in lines[2]
    assert "#1 ep_1  --- error  15000 ms  timed out" in lines[3]
    assert "state" in lines[4] and "scheduled after 1 attempt(s)" in lines[4]
    assert "next at 2026-01-05T10:00:20Z" in lines[4]


def test_json_output(api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["events", "timeline", "evt_1", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == TIMELINE


def test_unknown_event(api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["events", "timeline", "evt_nope"])
    assert result.exit_code == 1
    assert "404: no event 'evt_nope'" in result.output
