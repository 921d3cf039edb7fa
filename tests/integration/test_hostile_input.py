"""Hostile input gets a clear 4xx, never a 500 (issue 11, part 2): deep nesting and invalid UTF-8
at ingest and at the API, a body without a key, out-of-range times, another tenant's source; and
what is unexpected after all is logged with a request id and answered as problem+json."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from tests.integration.conftest import ADMIN, Harness

from interlink.domain.jobs import JobKind, RedriveFilter
from interlink.domain.json_input import MAX_DEPTH
from interlink.storage.tenancy import tenant_scope

PROBLEM = "application/problem+json"


def nested(levels: int) -> bytes:
    return b'{"type": "booking.created", "data": ' + b"[" * levels + b"]" * levels + b"}"


def signed_bytes(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers over the body's bytes as they are (UTF-8 or not)."""
    stamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json",
    }


def assert_problem(r: httpx.Response, status: int, words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status and problem["type"] and problem["title"], problem
    assert words in problem["detail"], problem
    return dict(problem)


async def ingest_source(h: Harness, key: str) -> tuple[str, str]:
    created = await h.post(key, "/api/v1/sources", {"name": "pms"})
    return created["source"]["id"], created["secrets"][0]


async def test_ingest_refuses_deep_nesting_and_invalid_utf8_with_400(harness: Harness) -> None:
    key = await harness.tenant()
    source, secret = await ingest_source(harness, key)
    refused = {
        "980 levels": (nested(980), "nested more than"),
        "5000 levels": (nested(5000), "nested more than"),
        "129 levels": (nested(MAX_DEPTH), "nested more than"),  # the payload's object is one more
        "invalid UTF-8 in a string": (b'{"type": "booking.created", "x": "\xff"}', "UTF-8"),
        "a truncated sequence": (b'{"type": "booking.created", "x": "\xc3"}', "UTF-8"),
    }
    for name, (body, words) in refused.items():
        headers = signed_bytes(secret, f"m-{name}", body)
        r = await harness.client.post(f"/in/{source}", content=body, headers=headers)
        assert_problem(r, 400, words)
    assert (await harness.get(key, "/api/v1/events")).json()["data"] == []
    # The limit is a line, not a cliff: as deep as it allows is accepted.
    body = nested(MAX_DEPTH - 1)
    r = await harness.client.post(
        f"/in/{source}", content=body, headers=signed_bytes(secret, "ok", body)
    )
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"name": "\xff\xfe"}'])
async def test_the_api_authenticates_before_it_reads_the_body(
    harness: Harness, body: bytes
) -> None:
    key = await harness.tenant()
    json_type = {"content-type": "application/json"}
    for path in ("/api/v1/tenants", "/api/v1/sources"):
        r = await harness.client.post(path, content=body, headers=json_type)
        assert_problem(r, 401, "API key")
        r = await harness.client.post(
            path, content=body, headers=json_type | harness.auth("not a key")
        )
        assert_problem(r, 401, "not valid")
    r = await harness.client.post(
        "/api/v1/tenants", content=body, headers=json_type | harness.auth(ADMIN)
    )
    assert_problem(r, 400, "nested" if body.startswith(b"[") else "UTF-8")
    r = await harness.client.post(
        "/api/v1/sources", content=body, headers=json_type | harness.auth(key)
    )
    assert_problem(r, 400, "nested" if body.startswith(b"[") else "UTF-8")
    assert (await harness.get(key, "/api/v1/sources")).json()["data"] == []


async def test_out_of_range_times_are_refused_and_store_no_job(harness: Harness) -> None:
    key = await harness.tenant()
    for body in (
        {"after": 1e20},
        {"before": -1e20},
        {"after": 1e300},
        {"before": 1e300},
        {"after": "10000-01-01T00:00:00Z"},
        {"after": "2026-01-01T00:00:00"},  # no time zone
        {"rate": 1e300},
    ):
        r = await harness.client.post("/api/v1/jobs/redrive", json=body, headers=harness.auth(key))
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
    for params in ({"after": "1e20"}, {"before": "nan"}, {"after": "inf"}, {"before": "-1"}):
        for path in ("/api/v1/events", "/api/v1/deliveries"):
            assert_problem(await harness.get(key, path, **params), 400, "epoch seconds")
    r = await harness.get(key, "/api/v1/jobs")
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    # The bounds' edges themselves are taken.
    r = await harness.client.post(
        "/api/v1/jobs/redrive",
        json={"after": 0, "before": 253402300799},
        headers=harness.auth(key),
    )
    assert r.status_code == 202, r.text
    assert r.json()["filter"]["created_before"] == "9999-12-31T23:59:59Z"


async def test_a_job_stored_with_an_unshowable_time_is_still_read(harness: Harness) -> None:
    """A job stored before times were bounded keeps its tenant's job list readable."""
    key = await harness.tenant()
    tenant_id = (await harness.client.get("/api/v1/tenants", headers=harness.auth(ADMIN))).json()[
        "data"
    ][0]["id"]
    with tenant_scope(tenant_id):  # as the API stored it (row-level security on PostgreSQL)
        job = await harness.system.jobs.create(
            tenant_id,
            JobKind.REDRIVE,
            RedriveFilter(created_after=-1e20, created_before=1e20),
            10.0,
        )
    listed = await harness.get(key, "/api/v1/jobs")
    assert listed.status_code == 200, listed.text
    one = await harness.get(key, f"/api/v1/jobs/{job.id}")
    assert one.status_code == 200, one.text
    shown = one.json()["filter"]
    assert shown["created_after"] == "0001-01-01T00:00:00Z"
    assert shown["created_before"] == "9999-12-31T23:59:59.999999Z"


async def test_replay_naming_another_tenants_source_is_not_found(
    harness: Harness, receiver_factory: Any
) -> None:
    a, b = await harness.tenant("a"), await harness.tenant("b")
    receiver = await receiver_factory()
    theirs, _ = await ingest_source(harness, a)
    endpoint = await harness.post(b, "/api/v1/endpoints", {"url": receiver.url})
    body = {"endpoint_id": endpoint["endpoint"]["id"], "source_id": theirs}
    r = await harness.client.post("/api/v1/jobs/replay", json=body, headers=harness.auth(b))
    assert_problem(r, 404, theirs)
    assert (await harness.get(b, "/api/v1/jobs")).json()["data"] == []
    ours, _ = await ingest_source(harness, b)
    body["source_id"] = ours
    r = await harness.client.post("/api/v1/jobs/replay", json=body, headers=harness.auth(b))
    assert r.status_code == 202, r.text


async def test_an_unexpected_api_error_is_logged_with_a_request_id(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await harness.tenant()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(harness.system.management, "list_sources", broken)
    with capture_logs() as logs:
        r = await harness.get(key, "/api/v1/sources")
    problem = assert_problem(r, 500, "request id")
    request_id = r.headers["x-request-id"]
    assert request_id in problem["detail"] and "a bug" not in r.text
    logged = [e for e in logs if e.get("event") == "api.unexpected_error"]
    assert len(logged) == 1, logs
    assert logged[0]["request_id"] == request_id and logged[0]["path"] == "/api/v1/sources"
    assert logged[0]["log_level"] == "error" and logged[0]["exc_info"]


async def test_an_unexpected_ingest_error_is_logged_with_a_request_id(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await harness.tenant()
    source, secret = await ingest_source(harness, key)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr("interlink.ingress.app.extract", broken)
    body = b'{"type": "booking.created", "data": {}}'
    with capture_logs() as logs:
        r = await harness.client.post(
            f"/in/{source}", content=body, headers=signed_bytes(secret, "m1", body)
        )
    problem = assert_problem(r, 500, "request id")
    assert r.headers["x-request-id"] in problem["detail"] and "a bug" not in r.text
    logged = [e for e in logs if e.get("event") == "ingest.unexpected_error"]
    assert [e["request_id"] for e in logged] == [r.headers["x-request-id"]]


async def test_a_wrong_method_is_405_with_allow(harness: Harness) -> None:
    r = await harness.client.put("/api/v1/tenants", headers=harness.auth(ADMIN))
    assert_problem(r, 405, "")
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    r = await harness.client.get("/in/src_whatever")
    assert_problem(r, 405, "POST")
    assert r.headers["allow"] == "POST"
