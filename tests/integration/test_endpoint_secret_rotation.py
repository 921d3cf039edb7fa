"""Endpoint signing secrets rotate without breaking receivers: during the overlap every
delivery carries both signatures (two ``v1,`` entries) and receivers holding the old secret or
the new one both verify it with the ``standardwebhooks`` package; after it, only the new one
does. A ``v1a`` endpoint signs with Ed25519, verifiable with its public key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from tests.integration.conftest import Harness, eventually, signed

from interlink.ingress.verifiers import VerificationError, standard_webhooks


class Recorder:
    """A receiver that keeps each delivery as sent (body and headers) and answers 200."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((await request.read(), dict(request.headers)))
        return web.Response(status=200)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    r = Recorder()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    yield r
    await runner.cleanup()


async def wire(h: Harness, url: str, **endpoint: Any) -> tuple[str, str, str, dict[str, Any]]:
    key = await h.tenant()
    source = await h.post(key, "/api/v1/sources", {"name": "pms"})
    ep = await h.post(key, "/api/v1/endpoints", {"url": url, **endpoint})
    await h.post(
        key, "/api/v1/subscriptions", {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    )
    return key, source["source"]["id"], source["secrets"][0], ep


async def deliver(
    h: Harness, r: Recorder, source: str, secret: str, msg: str
) -> tuple[bytes, dict[str, str]]:
    body, headers = signed(secret, msg, {"type": "booking.created", "data": {"m": msg}})
    assert (await h.client.post(f"/in/{source}", content=body, headers=headers)).status_code == 202
    count = len(r.got)
    await eventually(lambda: len(r.got) > count)
    return r.got[-1]


def verifies(secret: str, delivery: tuple[bytes, dict[str, str]]) -> bool:
    try:
        Webhook(secret).verify(delivery[0], delivery[1])
    except WebhookVerificationError:
        return False
    return True


async def test_both_secrets_verify_during_the_overlap_and_only_the_new_after(
    harness: Harness, recorder: Recorder
) -> None:
    h = harness
    key, source, source_secret, ep = await wire(h, recorder.url)
    old, endpoint_id = ep["secret"], ep["endpoint"]["id"]
    before = await deliver(h, recorder, source, source_secret, "m-before")
    assert before[1]["webhook-signature"].count("v1,") == 1 and verifies(old, before)

    r = await h.client.post(
        f"/api/v1/endpoints/{endpoint_id}/secret/rotate",
        json={"overlap_seconds": 2},
        headers=h.auth(key),
    )
    assert r.status_code == 201, r.text
    new = r.json()["secret"]
    assert new != old and r.json()["endpoint"]["secret_expires_at"][0] is not None
    during = await deliver(h, recorder, source, source_secret, "m-during")
    assert during[1]["webhook-signature"].count("v1,") == 2
    assert verifies(old, during) and verifies(new, during)

    await asyncio.sleep(3.1)  # the overlap ends (signatures carry whole seconds)
    after = await deliver(h, recorder, source, source_secret, "m-after")
    assert after[1]["webhook-signature"].count("v1,") == 1
    assert verifies(new, after) and not verifies(old, after)
    shown = (await h.get(key, f"/api/v1/endpoints/{endpoint_id}")).json()
    assert old not in str(shown) and new not in str(shown)


async def test_the_default_overlap_is_a_day_and_bad_rotations_are_refused(
    harness: Harness, recorder: Recorder
) -> None:
    h = harness
    key, _, _, ep = await wire(h, recorder.url)
    path = f"/api/v1/endpoints/{ep['endpoint']['id']}/secret/rotate"
    started = time.time()
    r = await h.client.post(path, json={}, headers=h.auth(key))
    assert r.status_code == 201, r.text
    retiring = r.json()["endpoint"]["secret_expires_at"][0]
    from datetime import datetime

    left = datetime.fromisoformat(retiring).timestamp() - started
    assert 24 * 3600 - 60 < left <= 24 * 3600 + 60
    for body, status in (
        ({"overlap_seconds": 7 * 24 * 3600 + 1}, 400),
        ({"overlap_seconds": -1}, 400),
        ({"secret": "not-a-secret"}, 422),
        ({"signing": "v2"}, 400),
        ({"signing": "v1a", "secret": "whsec_" + "a" * 44}, 422),
    ):
        bad = await h.client.post(path, json=body, headers=h.auth(key))
        assert bad.status_code == status, (body, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")
    # Another tenant's endpoint is not found.
    other = await h.tenant("other")
    assert (await h.client.post(path, json={}, headers=h.auth(other))).status_code == 404
    # Three live secrets at most; rotating with no overlap always has room.
    await h.post(key, path, {})
    full = await h.client.post(path, json={}, headers=h.auth(key))
    assert full.status_code == 422 and "at most 3" in full.json()["detail"]
    assert (
        await h.client.post(path, json={"overlap_seconds": 0}, headers=h.auth(key))
    ).status_code == 201


async def test_a_v1a_endpoint_signs_with_ed25519_and_shows_only_its_public_key(
    harness: Harness, recorder: Recorder
) -> None:
    h = harness
    key, source, source_secret, ep = await wire(h, recorder.url, signing="v1a")
    public_key = ep["public_key"]
    assert ep["secret"] is None and public_key.startswith("whpk_")
    assert ep["endpoint"]["signing"] == "v1a" and ep["endpoint"]["public_keys"] == [public_key]
    delivery = await deliver(h, recorder, source, source_secret, "m-v1a")
    signature = delivery[1]["webhook-signature"]
    assert signature.startswith("v1a,") and "v1," not in signature
    body, headers = delivery
    standard_webhooks.verify(body, headers, [public_key], {}, 300, time.time())
    # Rotated with an overlap: both keys sign, each verifies on its own; both are readable.
    r = await h.post(key, f"/api/v1/endpoints/{ep['endpoint']['id']}/secret/rotate", {})
    assert r["secret"] is None and r["public_key"] != public_key
    assert r["endpoint"]["public_keys"] == [public_key, r["public_key"]]
    during = await deliver(h, recorder, source, source_secret, "m-v1a-2")
    assert during[1]["webhook-signature"].count("v1a,") == 2
    for pk in (public_key, r["public_key"]):
        standard_webhooks.verify(during[0], during[1], [pk], {}, 300, time.time())
    with pytest.raises(VerificationError):
        standard_webhooks.verify(
            during[0], during[1], [standard_webhooks.generate_key_pair()[1]], {}, 300, time.time()
        )
