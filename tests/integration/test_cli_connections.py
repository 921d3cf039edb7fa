"""`interlink connections create|list|show|refresh|delete` against a real Interlink listening on
loopback and the simulated partner's token endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.test_cli_sources import run_cli, running  # noqa: F401 - the fixture

from interlink.app import Interlink
from interlink.partners.simulator import PartnerSimulator
from interlink.storage.tenancy import system_scope


def printed(output: str) -> Any:
    """The JSON the command printed (indented, so it starts on a line of its own); the
    server's log lines, one JSON object a line in the same process, may surround it."""
    lines = output.splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.strip() in ("{", "[", "[]"))
    return json.JSONDecoder().raw_decode("".join(lines[start:]))[0]


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSimulator]:
    sim = PartnerSimulator()
    await sim.start()
    yield sim
    await sim.stop()


async def test_create_show_refresh_list_delete(
    running: Interlink,  # noqa: F811
    partner: PartnerSimulator,
) -> None:
    with system_scope("test: the operator"):
        _, key = await running.management.create_tenant("acme")
    created = await run_cli(
        running,
        key,
        "connections",
        "create",
        "sim",
        "--token-url",
        partner.token_url,
        "--client-id",
        partner.client_id,
        "--client-secret",
        partner.client_secret,
        "--scope",
        "bookings:read",
    )
    assert created.exit_code == 0, created.output
    assert partner.client_secret not in created.output
    connection = printed(created.output)
    assert connection["status"] == "healthy" and connection["scopes"] == ["bookings:read"]
    cid = connection["id"]

    shown = await run_cli(running, key, "connections", "show", cid)
    assert shown.exit_code == 0 and printed(shown.output)["refresh_count"]["ok"] == 1

    partner.token_failure = 500
    refreshed = await run_cli(running, key, "connections", "refresh", cid)
    assert refreshed.exit_code == 0, refreshed.output
    assert printed(refreshed.output)["status"] == "failed"

    listed = await run_cli(running, key, "connections", "list")
    assert [c["id"] for c in printed(listed.output)] == [cid]
    assert (await run_cli(running, key, "connections", "delete", cid)).exit_code == 0
    missing = await run_cli(running, key, "connections", "show", cid)
    assert missing.exit_code == 1 and "404" in missing.output
