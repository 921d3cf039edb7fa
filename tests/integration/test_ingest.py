"""The ingest route in process: what is accepted, what is refused, and that refusals
store nothing."""

from __future__ import annotations

import time

from tests.integration.conftest import Harness, signed

from interlink.ingress.verifiers.hmac_scheme import sign_hmac


async def make_source(h: Harness, key: str, **body: object) -> tuple[str, str]:
    created = await h.post(key, "/api/v1/sources", {"name": "pms", **body})
    return created["source"]["id"], created["secrets"][0]


async def event_count(h: Harness, key: str) -> int:
    r = await h.get(key, "/api/v1/events", limit=500)
    return len(r.json()["data"])


async def test_accepts_and_dedupes(harness: Harness) -> None:
    key = await harness.tenant()
    source, secret = await make_source(harness, key)
    body, headers = signed(secret, "msg_1", {"type": "booking.created", "data": {"id": 1}})
    first = await harness.client.post(f"/in/{source}", content=body, headers=headers)
    assert first.status_code == 202
    assert first.json()["duplicate"] is False
    body, headers = signed(secret, "msg_1", {"type": "booking.created", "data": {"id": 1}})
    again = await harness.client.post(f"/in/{source}", content=body, headers=headers)
    assert again.status_code == 202
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert await event_count(harness, key) == 1


async def test_refusals_are_clear_and_store_nothing(harness: Harness) -> None:
    key = await harness.tenant()
    source, secret = await make_source(harness, key, max_body_bytes=1024)
    ok = {"type": "booking.created", "data": {}}
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = []
    body, headers = signed("whsec_" + "A" * 44, "m1", ok)
    cases.append(("forged", body, headers, 401, "no signature matched"))
    body, headers = signed(secret, "m2", ok, at=time.time() - 600)
    cases.append(("stale", body, headers, 401, "old"))
    body, headers = signed(secret, "m3", ok, at=time.time() + 600)
    cases.append(("future", body, headers, 401, "future"))
    body, headers = signed(secret, "m4", {"type": "x", "pad": "a" * 2000})
    cases.append(("oversized", body, headers, 413, "larger than"))
    body, headers = signed(secret, "m5", b'{"type": "booking.created",')
    cases.append(("malformed", body, headers, 400, "malformed JSON"))
    body, headers = signed(secret, "m6", [1, 2])
    cases.append(("array", body, headers, 400, "JSON object"))
    body, headers = signed(secret, "m7", {"data": {}})
    cases.append(("no type", body, headers, 422, "no event type"))
    body, headers = signed(secret, "m8", ok)
    del headers["webhook-signature"]
    cases.append(("unsigned", body, headers, 401, "webhook-signature"))
    for name, body, headers, status, words in cases:
        r = await harness.client.post(f"/in/{source}", content=body, headers=headers)
        assert r.status_code == status, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert words in r.json()["detail"], (name, r.json())
        assert secret not in r.text
    assert await event_count(harness, key) == 0


async def test_streamed_body_over_the_cap_is_refused(harness: Harness) -> None:
    key = await harness.tenant()
    source, _ = await make_source(harness, key, max_body_bytes=1024)

    async def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(10):
            yield b"x" * 512

    r = await harness.client.post(f"/in/{source}", content=chunks())
    assert r.status_code == 413


async def test_unknown_source_and_wrong_method(harness: Harness) -> None:
    r = await harness.client.post("/in/src_nope", content=b"{}")
    assert r.status_code == 404 and "no source" in r.json()["detail"]
    r = await harness.client.get("/in/src_nope")
    assert r.status_code == 405


async def test_generic_hmac_source_with_github_style_header(harness: Harness) -> None:
    key = await harness.tenant()
    config = {"header": "x-hub-signature-256", "prefix": "sha256=", "encoding": "hex"}
    source, secret = await make_source(
        harness,
        key,
        verifier="hmac",
        verifier_config=config,
        envelope={"id_from": "json:id", "type_path": "action", "data_path": None},
    )
    body = b'{"id": "gh-1", "action": "push"}'
    signature = sign_hmac(secret, body, config)
    r = await harness.client.post(
        f"/in/{source}", content=body, headers={"x-hub-signature-256": signature}
    )
    assert r.status_code == 202, r.text
    r = await harness.client.post(
        f"/in/{source}", content=body + b" ", headers={"x-hub-signature-256": signature}
    )
    assert r.status_code == 401
    events = (await harness.get(key, "/api/v1/events")).json()["data"]
    assert [(e["type"], e["idempotency_key"]) for e in events] == [("push", "gh-1")]
