"""An endpoint's URL is judged against the outbound policy when it is created or changed.

An IP literal the policy refuses is refused at once (400); a host name whose addresses are
all refused is accepted with a ``warnings`` entry (DNS may change, the operator may widen the
policy), so a loopback endpoint no longer fails for hours in silence. Every such message names
the setting that changes it. Run with the default policy (nothing private allowed).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.canary import Sweep
from tests.integration.conftest import Harness, free_port, running, serving, settings_for
from tests.integration.test_cli_sources import run_cli

from interlink.app import Interlink
from interlink.storage.tenancy import system_scope

SETTING = "INTERLINK_OUTBOUND_ALLOW_NETWORKS"


@pytest.fixture
async def strict(tmp_path: Path, canary: Sweep) -> AsyncIterator[Harness]:
    async with running(settings_for(tmp_path, outbound_allow_networks=[]), canary) as harness:
        yield harness


async def test_a_loopback_host_name_is_accepted_with_a_warning_naming_the_setting(
    strict: Harness,
) -> None:
    key = await strict.tenant()
    created = await strict.post(key, "/api/v1/endpoints", {"url": "http://localhost:9999/hook"})
    (warning,) = created["endpoint"]["warnings"]
    assert "localhost" in warning and "loopback" in warning and SETTING in warning
    endpoint_id = created["endpoint"]["id"]
    # Reads carry no warnings; a change of url is judged again, other changes are not.
    read = (await strict.get(key, f"/api/v1/endpoints/{endpoint_id}")).json()
    assert read["warnings"] == []
    h = strict.auth(key)
    path = f"/api/v1/endpoints/{endpoint_id}"
    changed = await strict.client.patch(path, json={"description": "x"}, headers=h)
    assert changed.status_code == 200 and changed.json()["warnings"] == []
    moved = await strict.client.patch(path, json={"url": "http://localhost:9998/"}, headers=h)
    assert moved.status_code == 200 and SETTING in moved.json()["warnings"][0]


async def test_a_private_ip_literal_is_refused_naming_the_setting(strict: Harness) -> None:
    key = await strict.tenant()
    for url in ("http://127.0.0.1:9999/", "http://10.1.2.3/", "http://[::1]:9/"):
        r = await strict.client.post(
            "/api/v1/endpoints", json={"url": url}, headers=strict.auth(key)
        )
        assert r.status_code == 422, (url, r.text)
        assert SETTING in r.json()["detail"], r.text


async def test_an_allowed_network_gets_no_warning(harness: Harness) -> None:
    key = await harness.tenant()  # the usual test settings allow 127.0.0.0/8
    created = await harness.post(key, "/api/v1/endpoints", {"url": "http://localhost:9999/"})
    assert created["endpoint"]["warnings"] == []


async def test_the_openapi_document_describes_the_warnings(strict: Harness) -> None:
    doc = (await strict.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    endpoint = next(s for name, s in schemas.items() if name.endswith("EndpointOut"))
    assert SETTING in endpoint["properties"]["warnings"]["description"]


@pytest.fixture
async def strict_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Interlink]:
    monkeypatch.chdir(tmp_path)
    settings = settings_for(
        tmp_path, host="127.0.0.1", port=free_port(), outbound_allow_networks=[]
    )
    async with serving(settings) as system:
        yield system


async def test_the_cli_prints_the_warning(strict_server: Interlink) -> None:
    with system_scope("test: the operator"):
        _, key = await strict_server.management.create_tenant("acme")
    out = await run_cli(strict_server, key, "endpoints", "create", "http://localhost:9999")
    assert out.exit_code == 0, out.output
    assert "warning: url: every delivery to localhost will be refused" in out.stderr
    assert SETTING in out.stderr
    assert json.loads(out.stdout)["endpoint"]["url"] == "http://localhost:9999"
