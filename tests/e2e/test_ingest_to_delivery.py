"""Ingest to delivery, end to end, on the embedded default (SQLite, one ``interlink up`` process).

Webhooks are signed and checked with the reference ``standardwebhooks`` package on both sides:
partners sign what they send to Interlink, receivers verify every request Interlink sends them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from .conftest import (
    Api,
    InterlinkProcess,
    Receiver,
    Receivers,
    Reply,
    Source,
    Tenant,
    always,
    signed_headers,
    wait_for,
)

pytestmark = pytest.mark.e2e

CONCURRENCY = 50
DELIVERY_TIMEOUT = 120.0  # seconds for everything sent to arrive; a healthy run needs a few


@dataclass
class Message:
    """One webhook a partner sends: ``key`` names it in the test, ``webhook_id`` on the wire."""

    key: str
    webhook_id: str
    body: bytes


def order_message(n: int) -> Message:
    body = json.dumps(
        {
            "type": "order.created",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {"n": n, "sku": "x" * 40},
        }
    ).encode()
    return Message(key=f"m{n}", webhook_id=f"msg_e2e_{n:05d}", body=body)


def data_of(message: Message) -> Any:
    return json.loads(message.body)["data"]


# Retrying is only for a process that is down: while it is, a request gets no 202 and counts as
# not acknowledged, so it is sent again (same webhook-id and body, freshly signed).
UNREACHABLE = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    aiohttp.ServerTimeoutError,
    OSError,
    TimeoutError,
)


async def send_webhooks(
    api: Api,
    source: Source,
    messages: list[Message],
    *,
    concurrency: int = CONCURRENCY,
    follow_up: Callable[[Message, Reply], list[Message]] | None = None,
    on_ack: Callable[[Message, Reply], None] | None = None,
    resend_unacknowledged: bool = False,
    timeout: float = 120.0,
) -> tuple[dict[str, Reply], int]:
    """Sends ``messages`` (and their follow-ups) with ``concurrency`` workers.

    Returns the answer to each message and how many sends failed and were repeated. Without
    ``resend_unacknowledged`` any failure to get an answer fails the test.
    """
    queue: asyncio.Queue[Message | None] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    outstanding = len(messages)
    replies: dict[str, Reply] = {}
    resent = 0

    async def worker() -> None:
        nonlocal outstanding, resent
        while (message := await queue.get()) is not None:
            try:
                reply = await api.ingest(source, message.webhook_id, message.body)
            except UNREACHABLE:
                if not resend_unacknowledged:
                    raise
                reply = None
            if reply is None or (resend_unacknowledged and reply.status == 503):
                resent += 1
                await asyncio.sleep(0.05)  # back off while the process is down
                queue.put_nowait(message)
                continue
            replies[message.key] = reply
            if reply.status == 202 and on_ack is not None:
                on_ack(message, reply)
            more = follow_up(message, reply) if follow_up is not None else []
            outstanding += len(more)
            for extra in more:
                queue.put_nowait(extra)
            outstanding -= 1
            if outstanding == 0:
                for _ in range(concurrency):
                    queue.put_nowait(None)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        done, pending = await asyncio.wait(
            tasks, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION
        )
        for task in done:
            task.result()  # re-raises what a worker failed with
        if pending:
            pytest.fail(f"sending took over {timeout:g} s; {len(replies)} answered so far")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return replies, resent


async def setup_fanout(
    api: Api, receivers: Receivers, **endpoint_options: Any
) -> tuple[Tenant, Source, list[Receiver]]:
    """A tenant with one source and two endpoints subscribed to every event type."""
    tenant = await api.tenant("acme")
    source = await api.source(tenant, "shop")
    first = await receivers.start("first")
    second = await receivers.start("second")
    for receiver in (first, second):
        await api.endpoint(tenant, receiver, subscribe=["*"], **endpoint_options)
    return tenant, source, [first, second]


async def wait_until_delivered(
    api: Api, tenant: Tenant, event_ids: set[str], targets: list[Receiver], timeout: float
) -> None:
    """Until every target has received every event and no delivery is left to be sent."""

    def progress() -> str:
        return ", ".join(
            f"{r.name}: {len(event_ids & r.counts.keys())}/{len(event_ids)}" for r in targets
        )

    async def done() -> bool:
        if not all(event_ids <= r.counts.keys() for r in targets):
            return False
        # Once no delivery is pending, in flight or scheduled, nothing more will be sent: the
        # receivers' counts are final.
        return await api.unsettled(tenant) == 0

    await wait_for(done, timeout=timeout, interval=0.25, what="every delivery", progress=progress)


def no_forgeries(targets: list[Receiver]) -> None:
    for receiver in targets:
        assert receiver.bad_signatures == [], (
            f"{receiver.name} got requests that fail Standard Webhooks verification: "
            f"{receiver.bad_signatures[:5]}"
        )


# 1 ------------------------------------------------------------------------------------------------


async def test_e2e_thousand_webhooks_with_duplicates(receivers: Receivers, api: Api) -> None:
    tenant, source, targets = await setup_fanout(api, receivers)

    originals = [order_message(n) for n in range(900)]
    repeated = {m.key for m in originals[::9]}  # 100 duplicates: 10 % of the 1,000 sent

    def duplicate_after_ack(message: Message, reply: Reply) -> list[Message]:
        # A duplicate goes out once its original is acknowledged, interleaved with the rest.
        if message.key in repeated and reply.status == 202:
            return [Message(f"{message.key}-again", message.webhook_id, message.body)]
        return []

    started = time.monotonic()
    replies, _ = await send_webhooks(api, source, originals, follow_up=duplicate_after_ack)
    ingest_seconds = time.monotonic() - started

    assert len(replies) == 1000
    refused = {k: r for k, r in replies.items() if r.status != 202}
    assert not refused, (
        f"{len(refused)} webhooks were not accepted, e.g. {list(refused.items())[:3]}"
    )
    originals_by_key = {m.key: m for m in originals}
    event_ids: dict[str, str] = {}  # event id -> key of the original message
    for message in originals:
        body = replies[message.key].body
        assert body["duplicate"] is False, (message.key, body)
        assert body["id"] not in event_ids, f"two messages got event id {body['id']}"
        event_ids[body["id"]] = message.key
    for key in repeated:
        body = replies[f"{key}-again"].body
        assert body == {"id": replies[key].body["id"], "duplicate": True}, (key, body)
    unique = set(event_ids)
    assert len(unique) == 900

    started = time.monotonic()
    await wait_until_delivered(api, tenant, unique, targets, DELIVERY_TIMEOUT)
    print(
        f"\ningest of 1,000 webhooks: {ingest_seconds:.2f} s; "
        f"all 1,800 deliveries settled {time.monotonic() - started:.2f} s later"
    )

    no_forgeries(targets)
    for receiver in targets:
        assert set(receiver.counts) == unique, receiver.name
        twice = {i: n for i, n in receiver.counts.items() if n != 1}
        assert not twice, (
            f"{receiver.name} received events more than once: {list(twice.items())[:5]}"
        )
        for event_id, payload in receiver.bodies.items():
            original = originals_by_key[event_ids[event_id]]
            assert payload["type"] == "order.created"
            assert payload["data"] == data_of(original), event_id

    stored = await api.events(tenant)
    assert {e["id"] for e in stored} == unique
    deliveries = await api.deliveries(tenant)
    assert len(deliveries) == 1800
    assert {d["status"] for d in deliveries} == {"succeeded"}
    assert all(d["attempt_count"] == 1 for d in deliveries)


# 2 ------------------------------------------------------------------------------------------------


async def test_e2e_sigkill_mid_stream_loses_nothing(
    receivers: Receivers, api: Api, interlink: InterlinkProcess
) -> None:
    tenant, source, targets = await setup_fanout(api, receivers)
    for receiver in targets:
        # Slow enough answers that deliveries are always in flight when the process dies.
        receiver.delay = 0.05
    messages = [order_message(n) for n in range(1000)]
    kill_after = 400

    acknowledged: dict[str, str] = {}  # key -> event id
    enough_acked = asyncio.Event()
    kill_done = asyncio.Event()
    seen_at_kill: dict[str, int] = {}

    def ack(message: Message, reply: Reply) -> None:
        event_id = reply.body["id"]
        previous = acknowledged.setdefault(message.key, event_id)
        assert previous == event_id, f"{message.key} acknowledged as {previous} and {event_id}"
        if len(acknowledged) >= kill_after:
            enough_acked.set()

    async def kill_and_restart() -> None:
        await enough_acked.wait()
        # Kill while a receiver is answering: that delivery is leased and must be resumed.
        deadline = time.monotonic() + 10
        while not any(r.active for r in targets) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        pid = interlink.pid
        interlink.sigkill()
        seen_at_kill.update({r.name: sum(r.counts.values()) for r in targets})
        seen_at_kill["acknowledged"] = len(acknowledged)
        print(f"\nSIGKILLed interlink (pid {pid}) after {len(acknowledged)} acknowledged webhooks")
        started = time.monotonic()
        await interlink.restart()
        print(f"restarted as pid {interlink.pid} in {time.monotonic() - started:.2f} s")
        kill_done.set()

    killer = asyncio.create_task(kill_and_restart())
    try:
        replies, resent = await send_webhooks(
            api, source, messages, on_ack=ack, resend_unacknowledged=True
        )
        await asyncio.wait_for(asyncio.shield(killer), timeout=60)
    finally:
        killer.cancel()
        await asyncio.gather(killer, return_exceptions=True)
    assert kill_done.is_set()

    refused = {k: r for k, r in replies.items() if r.status != 202}
    assert not refused, f"{len(refused)} webhooks were refused, e.g. {list(refused.items())[:3]}"
    assert len(acknowledged) == 1000
    event_ids = set(acknowledged.values())
    assert len(event_ids) == 1000, "two different messages were acknowledged with one event id"
    # The kill must have landed mid-stream, not after everything was already through.
    assert seen_at_kill["acknowledged"] < 1000
    print(
        f"sends repeated while the process was down or dying: {resent}; "
        f"requests at the receivers at the kill: {seen_at_kill}"
    )

    await wait_until_delivered(api, tenant, event_ids, targets, DELIVERY_TIMEOUT)

    no_forgeries(targets)
    stored = await api.events(tenant)
    assert {e["id"] for e in stored} == event_ids, "the log holds events nobody was told about"
    deliveries = await api.deliveries(tenant)
    assert len(deliveries) == 2 * len(event_ids)
    assert {d["status"] for d in deliveries} == {"succeeded"}

    duplicates = 0
    for receiver in targets:
        unexpected = set(receiver.counts) - event_ids
        assert not unexpected, f"{receiver.name} got unknown webhook-ids {sorted(unexpected)[:5]}"
        duplicates += receiver.duplicates
        print(
            f"{receiver.name}: {len(receiver.counts)} events, "
            f"{sum(receiver.counts.values())} requests, {receiver.duplicates} duplicates"
        )
    # What the restarted process found in flight (claimed, not settled) when the first died.
    resumed = sum(
        line.get("count", 0)
        for line in interlink.log_lines(run=2)
        if line.get("event") == "dispatcher.resumed_in_flight"
    )
    print(
        f"duplicate deliveries after the SIGKILL: {duplicates} "
        f"(deliveries in flight at the kill, resumed by the restart: {resumed})"
    )
    assert resumed > 0, "no delivery was in flight at the kill: the restart recovered nothing"
    # Only what was in flight (sent but not settled) at the kill may be sent again.
    assert duplicates <= 600
    assert duplicates <= resumed


# 3 ------------------------------------------------------------------------------------------------


async def single_event(api: Api, source: Source, webhook_id: str) -> str:
    reply = await api.ingest(source, webhook_id, order_message(1).body)
    assert reply.status == 202, reply
    return str(reply.body["id"])


async def wait_for_delivery(
    api: Api, tenant: Tenant, event_id: str, status: str, timeout: float = 30.0
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        items = await api.deliveries(tenant, event_id=event_id)
        if len(items) == 1:
            found.update(items[0])
        return found.get("status") == status

    await wait_for(
        reached,
        timeout=timeout,
        interval=0.1,
        what=f"the delivery of {event_id} to be {status}",
        progress=lambda: f"last seen: {found or 'no delivery'}",
    )
    return found


async def test_e2e_retries_then_succeeds(receivers: Receivers, api: Api) -> None:
    tenant = await api.tenant("acme")
    source = await api.source(tenant)
    receiver = await receivers.start("flaky", lambda _id, n: 500 if n <= 3 else 200)
    endpoint = await api.endpoint(
        tenant, receiver, subscribe=["order.*"], retry_schedule=[0, 0.2, 0.2, 0.2, 0.2]
    )

    event_id = await single_event(api, source, "msg_retry")
    delivery = await wait_for_delivery(api, tenant, event_id, "succeeded")

    no_forgeries([receiver])
    assert receiver.answered == [(event_id, 500)] * 3 + [(event_id, 200)]
    assert delivery["endpoint_id"] == endpoint.id
    assert delivery["attempt_count"] == 4
    assert delivery["last_status_code"] == 200
    attempts = await api.attempts(tenant, delivery["id"])
    assert [(a["number"], a["outcome"], a["status_code"]) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "failed", 500),
        (4, "succeeded", 200),
    ]


# 4 ------------------------------------------------------------------------------------------------


async def test_e2e_dead_letter_and_retry(receivers: Receivers, api: Api) -> None:
    tenant = await api.tenant("acme")
    source = await api.source(tenant)
    receiver = await receivers.start("down", always(500))
    endpoint = await api.endpoint(tenant, receiver, subscribe=["*"], retry_schedule=[0, 0.2, 0.2])

    event_id = await single_event(api, source, "msg_dead")
    dead: list[dict[str, Any]] = []

    async def dead_lettered() -> bool:
        dead[:] = await api.deliveries(tenant, status="dead", endpoint_id=endpoint.id)
        return len(dead) == 1

    await wait_for(dead_lettered, timeout=30, what="the delivery to be dead")
    delivery = dead[0]
    assert delivery["event_id"] == event_id
    assert delivery["attempt_count"] == 3
    assert delivery["next_attempt_at"] is None
    attempts = await api.attempts(tenant, delivery["id"])
    assert [(a["outcome"], a["status_code"]) for a in attempts] == [("failed", 500)] * 3
    assert receiver.counts[event_id] == 3

    receiver.behaviour = always(200)
    retried = await api.request(
        "POST", f"/api/v1/deliveries/{delivery['id']}/retry", key=tenant.key
    )
    assert retried.status == 202, retried
    assert retried.body["id"] == delivery["id"]
    assert retried.body["status"] in ("pending", "in_flight", "succeeded"), retried.body

    settled = await wait_for_delivery(api, tenant, event_id, "succeeded")
    assert settled["id"] == delivery["id"]
    assert settled["last_status_code"] == 200
    assert receiver.answered == [(event_id, 500)] * 3 + [(event_id, 200)]
    no_forgeries([receiver])
    attempts = await api.attempts(tenant, delivery["id"])
    assert [(a["outcome"], a["status_code"]) for a in attempts] == [("failed", 500)] * 3 + [
        ("succeeded", 200)
    ]
    assert await api.deliveries(tenant, status="dead", endpoint_id=endpoint.id) == []


# 5 ------------------------------------------------------------------------------------------------


class Problems:
    """Collects every mismatch, so one run reports all the cases that are wrong."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.failures: list[str] = []

    async def expect(
        self, name: str, status: int, needle: str, method: str, path: str, **kwargs: Any
    ) -> None:
        """``method path`` must answer ``status`` with a problem whose detail has ``needle``."""
        reply = await self.api.request(method, path, **kwargs)
        if reply.status != status:
            self.failures.append(f"{name}: expected {status}, got {reply.status} {reply.body!r}")
            return
        try:
            detail = reply.problem_detail()
        except AssertionError as exc:
            self.failures.append(f"{name}: {exc}")
            return
        if needle.lower() not in detail.lower():
            self.failures.append(f"{name}: detail {detail!r} does not mention {needle!r}")

    def check(self) -> None:
        failures, self.failures = self.failures, []
        assert not failures, "\n".join(failures)


def other_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def test_e2e_bad_input(receivers: Receivers, api: Api) -> None:
    a = await api.tenant("tenant-a")
    b = await api.tenant("tenant-b")
    source = await api.source(a, "small", max_body_bytes=1024)
    receiver = await receivers.start("a")
    endpoint = await api.endpoint(a, receiver, subscribe=["*"])

    # One good event first, so there are ids of every kind to probe across tenants.
    good = await single_event(api, source, "msg_good")
    delivery = await wait_for_delivery(api, a, good, "succeeded")
    events_before = len(await api.events(a))
    assert events_before == 1

    now = datetime.now(UTC)
    valid_body = order_message(2).body
    inbound = f"/in/{source.id}"

    def signed(
        body: bytes, webhook_id: str, *, at: datetime | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        headers = signed_headers(secret or source.secret, webhook_id, body, at)
        return {"data": body, "headers": headers}

    async def in_chunks(body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    big = json.dumps({"type": "order.created", "data": {"blob": "x" * 2000}}).encode()
    stale = now - timedelta(minutes=10)
    future = now + timedelta(minutes=10)
    problems = Problems(api)
    await problems.expect(
        "forged signature",
        401,
        "signature",
        "POST",
        inbound,
        **signed(valid_body, "bad_1", secret=other_secret()),
    )
    await problems.expect(
        "stale timestamp", 401, "old", "POST", inbound, **signed(valid_body, "bad_2", at=stale)
    )
    await problems.expect(
        "future timestamp",
        401,
        "future",
        "POST",
        inbound,
        **signed(valid_body, "bad_3", at=future),
    )
    await problems.expect("oversized body", 413, "1024", "POST", inbound, **signed(big, "bad_4"))
    await problems.expect(
        "oversized body, chunked (no content-length)",
        413,
        "1024",
        "POST",
        inbound,
        data=in_chunks(big),
        headers=signed_headers(source.secret, "bad_4b", big),
    )
    await problems.expect(
        "unsigned",
        401,
        "webhook-",
        "POST",
        inbound,
        data=valid_body,
        headers={"content-type": "application/json"},
    )
    await problems.expect(
        "malformed JSON",
        400,
        "JSON",
        "POST",
        inbound,
        **signed(b'{"type": "order.created", ', "bad_5"),
    )
    await problems.expect(
        "JSON array",
        400,
        "object",
        "POST",
        inbound,
        **signed(b'[{"type": "order.created"}]', "bad_6"),
    )
    await problems.expect(
        "missing type", 422, "type", "POST", inbound, **signed(b'{"data": {"n": 1}}', "bad_7")
    )
    await problems.expect(
        "unknown source",
        404,
        "source",
        "POST",
        "/in/src_does_not_exist",
        **signed(valid_body, "bad_8"),
    )
    await problems.expect("GET on an ingest URL", 405, "POST", "GET", "/in/x")
    await problems.expect("GET on a real ingest URL", 405, "POST", "GET", inbound)
    problems.check()

    # Rejected requests store nothing.
    assert len(await api.events(a)) == events_before

    # Tenant B sees none of tenant A's things, and cannot touch them.
    delivery_path = f"/api/v1/deliveries/{delivery['id']}"
    for name, method, path, needle in [
        ("B reads tenant A", "GET", f"/api/v1/tenants/{a.id}", a.id),
        ("B reads A's source", "GET", f"/api/v1/sources/{source.id}", source.id),
        ("B reads A's endpoint", "GET", f"/api/v1/endpoints/{endpoint.id}", endpoint.id),
        (
            "B reads A's subscription",
            "GET",
            f"/api/v1/subscriptions/{endpoint.subscription_id}",
            str(endpoint.subscription_id),
        ),
        ("B reads A's event", "GET", f"/api/v1/events/{good}", good),
        ("B reads A's delivery", "GET", delivery_path, delivery["id"]),
        ("B reads A's attempts", "GET", f"{delivery_path}/attempts", delivery["id"]),
        ("B retries A's delivery", "POST", f"{delivery_path}/retry", delivery["id"]),
        ("B replays A's event", "POST", f"/api/v1/events/{good}/replay", good),
        ("B deletes A's source", "DELETE", f"/api/v1/sources/{source.id}", source.id),
        ("B deletes A's endpoint", "DELETE", f"/api/v1/endpoints/{endpoint.id}", endpoint.id),
    ]:
        await problems.expect(name, 404, needle, method, path, key=b.key)
    await problems.expect(
        "B pauses A's endpoint",
        404,
        endpoint.id,
        "PATCH",
        f"/api/v1/endpoints/{endpoint.id}",
        key=b.key,
        json={"status": "paused"},
    )
    await problems.expect(
        "B subscribes to A's endpoint",
        404,
        endpoint.id,
        "POST",
        "/api/v1/subscriptions",
        key=b.key,
        json={"endpoint_id": endpoint.id, "event_types": ["*"]},
    )
    await problems.expect("no key", 401, "key", "GET", "/api/v1/sources")
    await problems.expect(
        "wrong key", 401, "key", "GET", "/api/v1/sources", key="ik_not_a_real_key"
    )
    await problems.expect(
        "tenant key creates a tenant",
        403,
        "admin",
        "POST",
        "/api/v1/tenants",
        key=a.key,
        json={"name": "x"},
    )
    await problems.expect(
        "malformed API JSON",
        400,
        "",
        "POST",
        "/api/v1/endpoints",
        key=b.key,
        data=b'{"url": "http://127.0.0.1:1/x"',
        headers={"content-type": "application/json"},
    )
    await problems.expect(
        "unknown field",
        400,
        "colour",
        "POST",
        "/api/v1/endpoints",
        key=b.key,
        json={"url": receiver.url, "colour": "red"},
    )
    problems.check()

    assert (await api.ok("GET", "/api/v1/events", key=b.key))["data"] == []
    assert (
        await api.ok("GET", "/api/v1/deliveries", key=b.key, params={"endpoint_id": endpoint.id})
    )["data"] == []
    assert (await api.ok("GET", "/api/v1/endpoints", key=b.key))["data"] == []
    assert (await api.ok("GET", "/api/v1/subscriptions", key=b.key))["data"] == []
    assert (await api.ok("GET", f"/api/v1/endpoints/{endpoint.id}", key=a.key))[
        "status"
    ] == "active"
    await api.ok("GET", f"/api/v1/sources/{source.id}", key=a.key)
    assert len(await api.events(a)) == events_before

    # A fence: one more valid event. Once it has arrived, anything the rejected requests had
    # wrongly let through (stored earlier in the log) would have arrived as well.
    fence = await single_event(api, source, "msg_fence")
    await wait_for_delivery(api, a, fence, "succeeded")
    assert await api.unsettled(a) == 0
    no_forgeries([receiver])
    assert dict(receiver.counts) == {good: 1, fence: 1}
    assert len(await api.events(a)) == events_before + 1


# 6 ------------------------------------------------------------------------------------------------


async def test_e2e_410_disables_endpoint(receivers: Receivers, api: Api) -> None:
    tenant = await api.tenant("acme")
    source = await api.source(tenant)
    receiver = await receivers.start("gone", always(410))
    endpoint = await api.endpoint(tenant, receiver, subscribe=["*"])

    event_id = await single_event(api, source, "msg_gone")
    delivery = await wait_for_delivery(api, tenant, event_id, "dead")

    assert delivery["attempt_count"] == 1
    assert delivery["last_status_code"] == 410
    attempts = await api.attempts(tenant, delivery["id"])
    assert [(a["outcome"], a["status_code"]) for a in attempts] == [("gone", 410)]
    current = await api.ok("GET", f"/api/v1/endpoints/{endpoint.id}", key=tenant.key)
    assert current["status"] == "disabled"
    assert "410" in (current["disabled_reason"] or "")
    assert receiver.answered == [(event_id, 410)]
    no_forgeries([receiver])


# 7 ------------------------------------------------------------------------------------------------


async def test_e2e_event_type_with_trailing_newline_is_rejected(
    receivers: Receivers, api: Api
) -> None:
    """Event types and patterns are dot-separated ``[A-Za-z0-9_-]+`` segments: no newline."""
    tenant = await api.tenant("acme")
    source = await api.source(tenant)
    receiver = await receivers.start("r")
    endpoint = await api.endpoint(tenant, receiver)

    body = b'{"type": "order.created\\n", "data": {}}'  # the JSON escape of a newline
    problems = Problems(api)
    await problems.expect(
        "event type with a trailing newline",
        422,
        "type",
        "POST",
        f"/in/{source.id}",
        data=body,
        headers=signed_headers(source.secret, "msg_newline", body),
    )
    await problems.expect(
        "pattern with a trailing newline",
        422,  # a rule the OpenAPI document cannot state (the pattern grammar)
        "order.created",
        "POST",
        "/api/v1/subscriptions",
        key=tenant.key,
        json={"endpoint_id": endpoint.id, "event_types": ["order.created\n"]},
    )
    stored = [repr(e["type"]) for e in await api.events(tenant)]
    subscriptions = (await api.ok("GET", "/api/v1/subscriptions", key=tenant.key))["data"]
    problems.check()
    assert stored == []
    assert subscriptions == []
