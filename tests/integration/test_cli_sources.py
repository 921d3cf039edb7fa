"""`interlink sources create` and `interlink sources rotate-secret` against a real Interlink
listening on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from click.testing import Result
from tests.integration.conftest import free_port, serving, settings_for
from typer.testing import CliRunner

from interlink import cli
from interlink.app import Interlink
from interlink.storage.tenancy import system_scope


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Interlink]:
    monkeypatch.chdir(tmp_path)
    async with serving(settings_for(tmp_path, host="127.0.0.1", port=free_port())) as system:
        yield system


async def run_cli(system: Interlink, key: str, *args: str) -> Result:
    env = {"INTERLINK_API_URL": system.settings.public_url, "INTERLINK_API_KEY": key}
    # In a thread: the CLI's client blocks, and the server answers on this loop.
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args), env=env)


async def test_create_a_stripe_source_and_rotate_its_secret(running: Interlink) -> None:
    with system_scope("test: the operator"):
        _, key = await running.management.create_tenant("acme")
    created = await run_cli(
        running,
        key,
        "sources",
        "create",
        "payments",
        "--verifier",
        "stripe",
        "--secret",
        "whsec_a1",
    )
    assert created.exit_code == 0, created.output
    source: dict[str, Any] = json.loads(created.output)["source"]
    assert source["verifier"] == "stripe"

    rotated = await run_cli(
        running,
        key,
        "sources",
        "rotate-secret",
        source["id"],
        "--secret",
        "whsec_b2",
        "--expire-current-in",
        "3600",
    )
    assert rotated.exit_code == 0, rotated.output
    answer = json.loads(rotated.output)
    assert answer["secret"] == "whsec_b2"
    assert answer["source"]["secret_count"] == 2
    assert answer["source"]["secret_expires_at"][0] is not None

    body = b'{"id": "evt_cli", "type": "invoice.paid"}'
    for secret in ("whsec_a1", "whsec_b2"):
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=int(time.time())
        )
        async with httpx.AsyncClient(base_url=running.settings.public_url) as client:
            r = await client.post(
                f"/in/{source['id']}", content=body, headers={"stripe-signature": header}
            )
        # The default envelope reads the id from webhook-id; Stripe's sits in the body, so the
        # body hash dedupes: the second answer is the first event.
        assert r.status_code == 202, r.text


async def test_rotate_refusal_is_printed_not_raised(running: Interlink) -> None:
    with system_scope("test: the operator"):
        _, key = await running.management.create_tenant("acme")
    result = await run_cli(running, key, "sources", "rotate-secret", "src_nope")
    assert result.exit_code == 1
    assert "404: no source 'src_nope'" in result.output
