"""Publishing end to end: ``interlink up`` (SQLite), 10,000 events over the batch API in
batches of 100 with 10 % repeated idempotency keys, to a push endpoint, and a SIGKILL of the
process while batches are in flight.

What must hold: every idempotency key is one event (a repeat, or a batch sent again after the
kill, answers the first event's id), every event a 2xx answered is stored and delivered after
the restart, and each reaches the receiver under its own webhook-id — more than once only for
deliveries that were in flight when the process was killed (at-least-once, same webhook-id).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.readme import run_readme_block

from .conftest import Api, InterlinkProcess, Receivers, wait_for

pytestmark = pytest.mark.e2e

EVENTS = 10_000
BATCH = 100
REPEATS = 0.10  # the share of events that reuse an idempotency key published before
SENDERS = 4
KILL_AFTER = 40  # answered batches before the SIGKILL
IN_FLIGHT_AT_KILL = 256  # the dispatcher's concurrency: the most a kill can make it resend
UNREACHABLE = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError, TimeoutError)


def batches() -> list[list[dict[str, Any]]]:
    rng = random.Random(20260101)
    keys: list[str] = []
    events = []
    for n in range(EVENTS):
        if keys and rng.random() < REPEATS:
            key = rng.choice(keys)
        else:
            key = f"order-{n:05d}"
            keys.append(key)
        events.append(
            {"type": "order.placed", "data": {"n": n}, "key": key[-2:], "idempotency_key": key}
        )
    return [events[i : i + BATCH] for i in range(0, EVENTS, BATCH)]


async def test_batches_survive_a_sigkill_and_each_key_is_delivered(
    api: Api, interlink: InterlinkProcess, receivers: Receivers
) -> None:
    started = time.monotonic()
    tenant = await api.tenant("publisher")
    receiver = await receivers.start("orders")
    # A wide lane: after a restart, a lane of the default 32 slots that was full at the kill
    # drains its backlog paced (the lane's full_since rule: ~150/s here), which would make this
    # test about lane pacing, not about publishing.
    await api.endpoint(tenant, receiver, subscribe=["order.*"], concurrency=200)
    work = batches()
    unique_keys = {e["idempotency_key"] for b in work for e in b}
    answers: dict[int, list[dict[str, Any]]] = {}
    refused_while_down = 0
    alive = asyncio.Event()
    alive.set()
    pending = list(range(len(work)))

    async def sender() -> None:
        nonlocal refused_while_down
        while pending:
            index = pending.pop(0)
            while index not in answers:
                await alive.wait()
                try:
                    reply = await api.request(
                        "POST", "/api/v1/events/batch", key=tenant.key, json={"events": work[index]}
                    )
                except UNREACHABLE:
                    reply = None
                if reply is not None and reply.status == 202:
                    answers[index] = reply.body["data"]
                else:
                    # Down (killed, restarting) or 503: the client sends the batch again, with
                    # the same idempotency keys.
                    refused_while_down += 1
                    await asyncio.sleep(0.05)

    async def killer() -> None:
        await wait_for(lambda: len(answers) >= KILL_AFTER, timeout=60, what="answered batches")
        alive.clear()
        interlink.sigkill()
        alive.set()  # senders see the refusals of a dead process, then of a starting one
        await interlink.restart()

    await asyncio.gather(killer(), *(sender() for _ in range(SENDERS)))
    assert refused_while_down > 0, "the kill landed after the stream: nothing was in flight"

    # Every key is one event, whichever batch (or resend) carried it.
    ids: dict[str, str] = {}
    for index, answer in answers.items():
        assert len(answer) == len(work[index])
        for sent, got in zip(work[index], answer, strict=True):
            assert ids.setdefault(sent["idempotency_key"], got["id"]) == got["id"]
    assert set(ids) == unique_keys
    expected = set(ids.values())
    assert len(expected) == len(unique_keys)

    stored = await api.events(tenant, type="order.placed")
    assert {e["id"] for e in stored} == expected  # nothing answered was lost, nothing doubled
    assert {e["origin"] for e in stored} == {"api"}

    await wait_for(
        lambda: expected <= set(receiver.counts),
        timeout=max(30.0, 85 - (time.monotonic() - started)),
        what="every published event at the receiver",
        progress=lambda: f"{len(set(receiver.counts) & expected)} of {len(expected)}",
    )
    assert set(receiver.counts) == expected and not receiver.bad_signatures
    assert receiver.duplicates <= IN_FLIGHT_AT_KILL, receiver.duplicates
    print(
        f"publish e2e: {EVENTS} events, {len(expected)} unique keys, {refused_while_down} "
        f"refused sends around the kill, {receiver.duplicates} redeliveries, "
        f"{time.monotonic() - started:.1f} s"
    )


async def test_the_readme_publish_block_runs_as_written(
    api: Api, interlink: InterlinkProcess, tmp_path: Path
) -> None:
    tenant = await api.tenant("readme")
    answers, stderr = await asyncio.to_thread(
        run_readme_block, "publish", tmp_path, interlink.base_url, tenant.key
    )
    single, batch, cli = answers
    assert single["duplicate"] is False
    assert [a["duplicate"] for a in batch["data"]] == [False, True]
    assert batch["data"][1]["id"] == single["id"]
    assert cli["duplicate"] is False and "follow it: interlink events timeline" in stderr
    stored = await api.events(tenant)
    assert len(stored) == 3 and {e["origin"] for e in stored} == {"api"}
