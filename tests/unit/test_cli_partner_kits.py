"""`interlink sources create --kit`, `sources set-kit` and `quarantine list|reprocess`: the
requests they make of the API."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from interlink import cli
from interlink.cli import _api


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/qtn_gone/reprocess"):
            return httpx.Response(404, json={"detail": "no quarantine entry 'qtn_gone'"})
        return httpx.Response(200, json={"data": [], "next_cursor": None})

    def client(config: str | None, admin: bool = False) -> httpx.Client:
        return httpx.Client(base_url="http://interlink", transport=httpx.MockTransport(handler))

    monkeypatch.setattr(_api, "client", client)
    return seen


def test_source_with_a_kit_leaves_the_verifier_to_it(api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["sources", "create", "beta", "--kit", "pms_beta"])
    assert result.exit_code == 0, result.output
    assert json.loads(api[0].content) == {"name": "beta", "secrets": [], "kit": "pms_beta"}


def test_set_kit_and_none(api: list[httpx.Request]) -> None:
    for kit, sent in [("pms_alpha", "pms_alpha"), ("none", None)]:
        result = CliRunner().invoke(cli.app, ["sources", "set-kit", "src_1", kit])
        assert result.exit_code == 0, result.output
        assert api[-1].method == "PATCH" and api[-1].url.path == "/api/v1/sources/src_1"
        assert json.loads(api[-1].content) == {"kit": sent}


def test_quarantine_commands(api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["quarantine", "list", "--stage", "held"])
    assert result.exit_code == 0, result.output
    assert dict(api[-1].url.params) == {"status": "open", "stage": "held"}
    result = CliRunner().invoke(cli.app, ["quarantine", "reprocess", "qtn_gone"])
    assert result.exit_code == 1 and "404: no quarantine entry 'qtn_gone'" in result.output


def test_timeline_lines_for_normalization_steps() -> None:
    lines = cli.format_timeline(
        {
            "event_id": "evt_raw",
            "steps": [
                {
                    "step": "quarantined",
                    "at": "2026-01-05T10:00:00Z",
                    "entry_id": "qtn_1",
                    "stage": "held",
                    "reason": "booking: a new entity cannot start as 'cancelled'",
                    "resolved_at": "2026-01-05T10:01:00Z",
                    "resolution": "released",
                },
                {
                    "step": "normalized",
                    "at": "2026-01-05T10:01:00Z",
                    "event_id": "evt_c",
                    "type": "booking.cancelled",
                    "key": "AR-1",
                },
            ],
        }
    )
    assert lines[1].endswith(
        "quarantine qtn_1 held: booking: a new entity cannot start as 'cancelled'"
        " (released at 2026-01-05T10:01:00Z)"
    )
    assert lines[2].endswith("normalized -> evt_c booking.cancelled key=AR-1")
