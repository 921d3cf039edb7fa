"""Every signature scheme through ``POST /in/{source_id}`` of an in-process Interlink, with
headers made by the partners' own libraries where there is one, and secret rotation over the API."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe
from nacl.signing import SigningKey
from svix.webhooks import Webhook as SvixWebhook
from tests.integration.conftest import Harness, signed

from interlink.ingress.verifiers.hmac_scheme import GITHUB, SHOPIFY, sign_hmac

JSON_ID = {"id_from": "json:id", "type_path": "type", "data_path": None}
STRIPE_SECRET = "whsec_integration_test_4f1a"


def payload(event_id: str) -> bytes:
    return json.dumps({"id": event_id, "type": "booking.created", "n": 1}).encode()


async def make_source(h: Harness, key: str, **body: Any) -> tuple[str, list[str]]:
    created = await h.post(key, "/api/v1/sources", {"name": "partner", **body})
    return created["source"]["id"], created["secrets"]


async def send(h: Harness, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await h.client.post(f"/in/{source}", content=body, headers=headers)


def assert_refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert detail.startswith("signature verification failed: "), detail
    assert words in detail, detail


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, at: float | None = None) -> dict:
    timestamp = int(time.time() if at is None else at)
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return {"stripe-signature": header, "content-type": "application/json"}


def github_headers(body: bytes, secret: str) -> dict[str, str]:
    return {"x-hub-signature-256": sign_hmac(secret, body, GITHUB.as_dict())}


def shopify_headers(body: bytes, secret: str) -> dict[str, str]:
    return {"x-shopify-hmac-sha256": sign_hmac(secret, body, SHOPIFY.as_dict())}


# --- each scheme ---------------------------------------------------------------------------------


async def test_stripe_source(harness: Harness) -> None:
    key = await harness.tenant()
    source, secrets = await make_source(
        harness, key, verifier="stripe", secrets=[STRIPE_SECRET], envelope=JSON_ID
    )
    assert secrets == [STRIPE_SECRET]
    body = payload("evt_1")
    r = await send(harness, source, body, stripe_headers(body))
    assert r.status_code == 202, r.text
    assert_refused(await send(harness, source, body + b" ", stripe_headers(body)), "no signature")
    wrong = stripe_headers(body, secret="whsec_someone_else")
    assert_refused(await send(harness, source, body, wrong), "no signature matched")
    stale = stripe_headers(body, at=time.time() - 600)
    assert_refused(await send(harness, source, body, stale), "s old; tolerance is 300 s")
    future = stripe_headers(body, at=time.time() + 600)
    assert_refused(await send(harness, source, body, future), "in the future")
    malformed = {"stripe-signature": "t=abc,v1=zz"}
    assert_refused(await send(harness, source, body, malformed), "malformed header")
    assert_refused(await send(harness, source, body, {}), "missing header 'stripe-signature'")
    events = (await harness.get(key, "/api/v1/events")).json()["data"]
    assert [e["idempotency_key"] for e in events] == ["evt_1"]
    assert "stripe-signature" in events[0]["headers"]


async def test_standard_webhooks_source_with_svix_headers(harness: Harness) -> None:
    key = await harness.tenant()
    source, (secret,) = await make_source(harness, key)
    body = payload("e1")
    signature = SvixWebhook(secret).sign("msg_svix_1", datetime.now(UTC), body.decode())
    headers = {"svix-id": "msg_svix_1", "svix-timestamp": str(int(time.time()))}
    r = await send(harness, source, body, headers | {"svix-signature": signature})
    assert r.status_code == 202, r.text
    r = await send(harness, source, body + b"!", headers | {"svix-signature": signature})
    assert_refused(r, "no signature matched")


async def test_standard_webhooks_v1a_source(harness: Harness) -> None:
    key = await harness.tenant()
    signing = SigningKey(bytes(range(32)))
    public_key = "whpk_" + base64.b64encode(bytes(signing.verify_key)).decode()
    source, secrets = await make_source(harness, key, secrets=[public_key])
    assert secrets == [public_key]
    body = payload("e1")
    now = int(time.time())
    v1a = base64.b64encode(signing.sign(f"msg_a.{now}.".encode() + body).signature).decode()
    headers = {"webhook-id": "msg_a", "webhook-timestamp": str(now)}
    r = await send(harness, source, body, headers | {"webhook-signature": f"v1a,{v1a}"})
    assert r.status_code == 202, r.text
    r = await send(harness, source, body + b" ", headers | {"webhook-signature": f"v1a,{v1a}"})
    assert_refused(r, "no signature matched")
    # A secret key is refused on entry: the source only ever needs the public half.
    r = await harness.client.post(
        "/api/v1/sources",
        json={"name": "x", "secrets": ["whsk_" + base64.b64encode(bytes(range(32))).decode()]},
        headers=harness.auth(key),
    )
    assert r.status_code == 422 and "give the source the partner's 'whpk_'" in r.json()["detail"]


@pytest.mark.parametrize("scheme", ["github", "shopify"])
async def test_github_and_shopify_sources(harness: Harness, scheme: str) -> None:
    key = await harness.tenant()
    make_headers = github_headers if scheme == "github" else shopify_headers
    body = payload("d1")
    source, (secret,) = await make_source(
        harness, key, verifier=scheme, secrets=["partner-issued-secret"], envelope=JSON_ID
    )
    assert (await send(harness, source, body, make_headers(body, secret))).status_code == 202
    r = await send(harness, source, body + b" ", make_headers(body, secret))
    assert_refused(r, "no signature matched")
    assert_refused(await send(harness, source, body, make_headers(body, "other")), "no signature")
    header = next(iter(make_headers(body, secret)))
    assert_refused(await send(harness, source, body, {header: "sha256=%%"}), "malformed header")
    assert_refused(await send(harness, source, body, {}), f"missing header '{header}'")


async def test_generic_hmac_source_with_timestamp(harness: Harness) -> None:
    key = await harness.tenant()
    config = {
        "header": "x-slack-signature",
        "prefix": "v0=",
        "template": "v0:{timestamp}:{body}",
        "timestamp_header": "x-slack-request-timestamp",
    }
    source, (secret,) = await make_source(
        harness, key, verifier="hmac", verifier_config=config, envelope=JSON_ID
    )
    body = payload("s1")

    def headers(at: float) -> dict[str, str]:
        ts = int(at)
        return {
            "x-slack-signature": sign_hmac(secret, body, config, ts),
            "x-slack-request-timestamp": str(ts),
        }

    assert (await send(harness, source, body, headers(time.time()))).status_code == 202
    assert_refused(await send(harness, source, body, headers(time.time() - 900)), "s old")
    assert_refused(await send(harness, source, body, headers(time.time() + 900)), "in the future")


async def test_stripe_and_shopify_need_the_partners_secret(harness: Harness) -> None:
    key = await harness.tenant()
    for scheme in ("stripe", "shopify"):
        r = await harness.client.post(
            "/api/v1/sources", json={"name": "s", "verifier": scheme}, headers=harness.auth(key)
        )
        assert r.status_code == 422, r.text
        assert "checks the signing secret the partner issues" in r.json()["detail"]


# --- rotation ------------------------------------------------------------------------------------


async def rotate(h: Harness, key: str, source: str, **body: Any) -> httpx.Response:
    return await h.client.post(f"/api/v1/sources/{source}/secrets", json=body, headers=h.auth(key))


async def test_rotation_old_secret_accepted_until_its_expiry(harness: Harness) -> None:
    key = await harness.tenant()
    source, (old,) = await make_source(harness, key, verifier="github", envelope=JSON_ID)
    r = await rotate(harness, key, source, expire_current_in_seconds=2)
    assert r.status_code == 201, r.text
    answer = r.json()
    new = answer["secret"]
    assert new != old
    assert answer["source"]["secret_count"] == 2
    old_expiry, new_expiry = answer["source"]["secret_expires_at"]
    assert old_expiry is not None and new_expiry is None

    # The change counts at once (the ingest's cache of the source is dropped), both verify.
    body_old, body_new = payload("r1"), payload("r2")
    assert (await send(harness, source, body_old, github_headers(body_old, old))).status_code == 202
    assert (await send(harness, source, body_new, github_headers(body_new, new))).status_code == 202

    expires = datetime.fromisoformat(old_expiry.replace("Z", "+00:00")).timestamp()
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
    body_late = payload("r3")
    r = await send(harness, source, body_late, github_headers(body_late, old))
    assert_refused(r, "no signature matched")
    assert (
        await send(harness, source, body_late, github_headers(body_late, new))
    ).status_code == 202

    # Never shown again: neither the view nor the listing carries a secret.
    view = (await harness.get(key, f"/api/v1/sources/{source}")).text
    listing = (await harness.get(key, "/api/v1/sources")).text
    for text in (view, listing):
        assert old not in text and new not in text


async def test_rotation_with_a_given_secret_and_without_expiry(harness: Harness) -> None:
    key = await harness.tenant()
    source, _ = await make_source(
        harness, key, verifier="stripe", secrets=[STRIPE_SECRET], envelope=JSON_ID
    )
    r = await rotate(harness, key, source, secret="whsec_rolled_by_stripe")
    assert r.status_code == 201, r.text
    assert r.json()["secret"] == "whsec_rolled_by_stripe"
    assert r.json()["source"]["secret_expires_at"] == [None, None]
    for i, secret in enumerate((STRIPE_SECRET, "whsec_rolled_by_stripe")):
        body = payload(f"k{i}")
        assert (await send(harness, source, body, stripe_headers(body, secret))).status_code == 202


async def test_rotation_refusals(harness: Harness) -> None:
    key = await harness.tenant()
    other = await harness.tenant("other")
    source, (secret,) = await make_source(harness, key)
    stripe_source, _ = await make_source(
        harness, key, verifier="stripe", secrets=[STRIPE_SECRET], envelope=JSON_ID
    )
    none_source, _ = await make_source(harness, key, verifier="none")
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        (other, source, {}, 404, "no source"),  # another tenant's source is not found
        (key, "src_nope", {}, 404, "no source"),
        (key, source, {"secret": "not-a-whsec"}, 422, "secret: not a Standard Webhooks secret"),
        (key, source, {"secret": secret}, 422, "already holds this secret"),
        (key, stripe_source, {}, 422, "checks the signing secret the partner issues"),
        (key, none_source, {}, 422, "takes no secrets"),
        (key, source, {"expire_current_in_seconds": -1}, 400, ""),
        (key, source, {"rotate": True}, 400, ""),
    ]
    for who, target, body, status, words in cases:
        r = await rotate(harness, who, target, **body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert words in r.json()["detail"], (body, r.json())
        assert secret not in r.text
    # Nothing of that changed the source.
    view = (await harness.get(key, f"/api/v1/sources/{source}")).json()
    assert view["secret_count"] == 1


async def test_rotation_is_bounded(harness: Harness) -> None:
    key = await harness.tenant()
    source, _ = await make_source(harness, key, verifier="github")
    for _ in range(9):
        assert (await rotate(harness, key, source)).status_code == 201
    r = await rotate(harness, key, source)
    assert r.status_code == 422 and "at most 10 secrets" in r.json()["detail"]
    # Expiring the current ones at once replaces them, which makes room.
    r = await rotate(harness, key, source, expire_current_in_seconds=0)
    assert r.status_code == 201, r.text
    assert r.json()["source"]["secret_count"] == 1


async def test_standard_webhooks_rotation_through_the_reference_signer(harness: Harness) -> None:
    key = await harness.tenant()
    source, (old,) = await make_source(harness, key)
    new = (await rotate(harness, key, source, expire_current_in_seconds=0)).json()["secret"]
    # Expired at once: only the new secret verifies.
    body, headers = signed(old, "m1", {"type": "a"})
    assert_refused(await send(harness, source, body, headers), "no signature matched")
    body, headers = signed(new, "m2", {"type": "a"})
    assert (await send(harness, source, body, headers)).status_code == 202
