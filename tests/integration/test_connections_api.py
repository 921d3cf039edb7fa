"""/api/v1/connections on a running Interlink, against the simulated partner's token endpoint:
the secret is accepted and never shown, status and counters are, tenants are apart, and bad
input gets a 400 problem that says what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.conftest import ADMIN, Harness

from interlink.partners.simulator import PartnerSimulator
from interlink.storage.tenancy import system_scope


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSimulator]:
    sim = PartnerSimulator()
    await sim.start()
    yield sim
    await sim.stop()


def body(partner: PartnerSimulator, **changes: Any) -> dict[str, Any]:
    return {
        "partner": "sim",
        "token_url": partner.token_url,
        "client_id": partner.client_id,
        "client_secret": partner.client_secret,
        "scopes": ["bookings:read"],
        **changes,
    }


async def test_create_show_refresh_delete(harness: Harness, partner: PartnerSimulator) -> None:
    key = await harness.tenant()
    created = await harness.post(key, "/api/v1/connections", body(partner))
    assert created["status"] == "healthy" and created["refresh_count"] == {"ok": 1, "failed": 0}
    assert created["expires_at"] and created["last_error"] is None
    cid = created["id"]
    assert cid.startswith("conn_")

    r = await harness.client.post(f"/api/v1/connections/{cid}/refresh", headers=harness.auth(key))
    assert r.status_code == 200 and r.json()["refresh_count"] == {"ok": 2, "failed": 0}
    assert partner.token_requests["client_credentials"] == 2

    partner.token_failure = 500
    r = await harness.client.post(f"/api/v1/connections/{cid}/refresh", headers=harness.auth(key))
    failed = r.json()
    assert failed["status"] == "failed" and failed["refresh_count"] == {"ok": 2, "failed": 1}
    assert "500" in failed["last_error"] and failed["next_attempt_at"]

    listing = (await harness.get(key, "/api/v1/connections")).json()
    assert [c["id"] for c in listing["data"]] == [cid]
    shown = (await harness.get(key, f"/api/v1/connections/{cid}")).json()
    assert shown["status"] == "failed" and shown["consecutive_failures"] == 1

    r = await harness.client.delete(f"/api/v1/connections/{cid}", headers=harness.auth(key))
    assert r.status_code == 204
    assert (await harness.get(key, f"/api/v1/connections/{cid}")).status_code == 404


async def test_no_secret_or_token_is_ever_answered(
    harness: Harness, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    refresh_token = partner.grant_refresh_token()
    created = await harness.post(
        key,
        "/api/v1/connections",
        body(partner, flow="authorization_code", refresh_token=refresh_token),
    )
    cid = created["id"]
    with system_scope("test: reading the stored tokens"):
        connection = await harness.system.tokens.connections.get_any(cid)
    assert connection is not None and connection.access_token is not None
    secrets = (
        partner.client_secret,
        refresh_token,
        connection.access_token.reveal(),
        connection.refresh_token.reveal() if connection.refresh_token else "",
    )
    for path in ("/api/v1/connections", f"/api/v1/connections/{cid}"):
        text = (await harness.get(key, path)).text
        assert not any(s in text for s in secrets)
    r = await harness.client.post(f"/api/v1/connections/{cid}/refresh", headers=harness.auth(key))
    assert not any(s in r.text for s in secrets)
    assert "sim_at_" not in str(created) and "sim_rt_" not in str(created)


async def test_an_authorization_code_is_exchanged_at_creation(
    harness: Harness, partner: PartnerSimulator
) -> None:
    key = await harness.tenant()
    created = await harness.post(
        key,
        "/api/v1/connections",
        body(
            partner,
            flow="authorization_code",
            authorization_code=partner.issue_code(),
            redirect_uri="http://127.0.0.1:8400/callback",
        ),
    )
    assert created["status"] == "healthy"
    assert partner.token_requests["authorization_code"] == 1


async def test_another_tenants_connection_is_not_found(
    harness: Harness, partner: PartnerSimulator
) -> None:
    a, b = await harness.tenant("a"), await harness.tenant("b")
    cid = (await harness.post(a, "/api/v1/connections", body(partner)))["id"]
    c = harness.client
    assert (await harness.get(b, f"/api/v1/connections/{cid}")).status_code == 404
    r = await c.post(f"/api/v1/connections/{cid}/refresh", headers=harness.auth(b))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert (
        await c.delete(f"/api/v1/connections/{cid}", headers=harness.auth(b))
    ).status_code == 404
    assert (await harness.get(b, "/api/v1/connections")).json()["data"] == []
    assert partner.token_requests["client_credentials"] == 1  # b's refresh did not happen
    assert (await harness.get(a, f"/api/v1/connections/{cid}")).status_code == 200


@pytest.mark.parametrize(
    ("changes", "words", "status"),
    [
        # 400: what the OpenAPI document states
        ({"flow": "implicit"}, "flow", 400),
        ({"client_secret": ""}, "client_secret", 400),
        ({"scopes": ["read write"]}, "scopes", 400),
        ({"colour": "red"}, "colour", 400),
        # 422: rules the document cannot state
        ({"token_url": "ftp://example.com/token"}, "scheme", 422),
        ({"token_url": "http://169.254.169.254/token"}, "link-local", 422),
        ({"flow": "authorization_code"}, "refresh_token", 422),
        ({"refresh_token": "rt"}, "client_credentials takes no", 422),
    ],
)
async def test_bad_input_gets_a_4xx_that_says_why(
    harness: Harness,
    partner: PartnerSimulator,
    changes: dict[str, Any],
    words: str,
    status: int,
) -> None:
    key = await harness.tenant()
    r = await harness.client.post(
        "/api/v1/connections", json=body(partner, **changes), headers=harness.auth(key)
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert words in r.json()["detail"]
    assert partner.token_requests.total() == 0


async def test_the_admin_key_cannot_create_connections(
    harness: Harness, partner: PartnerSimulator
) -> None:
    r = await harness.client.post(
        "/api/v1/connections", json=body(partner), headers=harness.auth(ADMIN)
    )
    assert r.status_code == 403
