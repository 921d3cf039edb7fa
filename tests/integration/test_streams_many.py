"""Realtime streams with many clients at once (SQLite, or PostgreSQL with
INTERLINK_TEST_BACKEND=postgres): a hundred clients dropped at random moments resume exactly
once across the seam; ten thousand events of two tenants reach only their own tenant's clients."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

from tests.canary import Sweep
from tests.integration.streams_support import Received, listening, sse, until, ws

BOOKING, PAYMENT = "booking.created", "payment.succeeded"


async def test_a_hundred_clients_dropped_at_random_resume_exactly_once(
    tmp_path: Path, canary: Sweep
) -> None:
    """50 SSE and 50 WebSocket clients, each cut off (its connection dropped, whatever it was
    reading) at random moments while events are appended, reconnect with the last position
    they had: each ends with every event once, in log order."""
    total, rng = 600, random.Random(15)
    async with listening(tmp_path, canary) as s:
        key, src = await s.tenant("a")
        expected: list[int] = []

        async def writer() -> None:
            while len(expected) < total:
                expected.extend(await s.append(src, [(BOOKING, None)] * 5))
                await asyncio.sleep(0.05)  # for some seconds: drops land mid-stream

        seams = 0  # reconnections after a drop that cut a stream already under way

        async def client(transport: str, drops: list[float]) -> list[int]:
            nonlocal seams
            got: list[int] = []
            last = 0
            for attempt in range(len(drops) + 1):
                received = Received()
                if transport == "sse":
                    headers = s.auth(key) | {"Last-Event-ID": str(last)}
                    reading = sse(s.url, received, headers=headers, until=total - len(got))
                else:
                    params = {"from": str(last)}
                    reading = ws(
                        s.url, received, headers=s.auth(key), params=params, until=total - len(got)
                    )
                task = asyncio.create_task(reading)
                if attempt < len(drops):
                    await asyncio.sleep(drops[attempt])
                    task.cancel()  # the drop: the connection goes mid-stream
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 60)
                got.extend(received.positions)
                seams += bool(got) and attempt < len(drops) and len(got) < total
                last = got[-1] if got else last
                if len(got) >= total:
                    break
            return got

        plans = [
            (t, [rng.uniform(0.2, 2.0) for _ in range(rng.randint(1, 3))])
            for t in ("sse", "ws")
            for _ in range(50)
        ]
        producing = asyncio.create_task(writer())
        results = await asyncio.wait_for(asyncio.gather(*(client(t, d) for t, d in plans)), 120)
        await producing
    for got in results:
        assert got == expected[:total], "a gap, a duplicate or a reordering at a seam"
    assert seams >= 50, f"only {seams} drops cut a stream under way"
    assert seams >= 50, f"only {seams} drops cut a stream under way"


async def test_ten_thousand_events_of_two_tenants_reach_only_their_own(
    tmp_path: Path, canary: Sweep
) -> None:
    """Clients of two tenants connected alternately (A, B, A, B …, each transport and filter
    shape, by key or by stream token), 10,000 events appended alternately for A and B: not one
    foreign event, and each client has all of its own that its filter matches."""
    async with listening(tmp_path, canary) as s:
        tenants = [await s.tenant("a"), await s.tenant("b")]
        shapes: list[dict[str, str]] = [{}, {"types": "booking.*"}, {"key": "k1,k2"}, {"from": "0"}]
        clients: list[tuple[int, dict[str, str], Received]] = []
        tasks = []
        for i in range(16):
            owner, params = i % 2, shapes[(i // 2) % len(shapes)]
            received = Received()
            read = sse if (i // 2) % 2 == 0 else ws
            key = tenants[owner][0]
            # The second half by a stream token of its tenant (as a browser), not the key.
            headers, auth = s.auth(key), {}
            if i >= 8:
                headers, auth = {}, {"token": await s.token(key)}
            reading = read(s.url, received, headers=headers, params=params | auth)
            tasks.append(asyncio.create_task(reading))
            clients.append((owner, params, received))
        await until(lambda: s.system.stream_hub.connections == 16, what="16 connections")
        appended: list[list[int]] = [[], []]
        kinds = [(BOOKING, "k1"), (PAYMENT, "k2"), (BOOKING, "k3"), (PAYMENT, "k4")]
        for batch in range(20):  # 20 batches of 500 events, each batch alternating A and B
            for owner in (0, 1):
                specs = [kinds[(batch + n) % 4] for n in range(250)]
                appended[owner] += await s.append(tenants[owner][1], specs)
        want = {
            (owner, tuple(sorted(p.items()))): n
            for owner in (0, 1)
            for p, n in [
                ({}, 5000),
                ({"types": "booking.*"}, 2500),
                ({"key": "k1,k2"}, 2500),
                ({"from": "0"}, 5000),
            ]
        }
        await until(
            lambda: all(
                len(r.events) >= want[(o, tuple(sorted(p.items())))] for o, p, r in clients
            ),
            timeout=120,
            what="every client's events",
        )
        # And one of each tenant resuming from 0 once all is appended: a replay through both
        # tenants' positions (B's first event comes after A's: not "history lost").
        late = [Received(), Received()]
        for owner in (0, 1):
            headers = s.auth(tenants[owner][0])
            await sse(s.url, late[owner], headers=headers, params={"from": "0"}, until=5000)
            clients.append((owner, {"from": "0"}, late[owner]))
        await asyncio.sleep(0.5)  # anything foreign or extra would have arrived by now
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    sources = [tenants[0][1], tenants[1][1]]
    for owner, params, received in clients:
        assert {e["source_id"] for e in received.events} == {sources[owner]}, "a foreign event"
        assert set(received.positions) <= set(appended[owner])
        assert received.positions == sorted(set(received.positions))
        assert len(received.events) == want[(owner, tuple(sorted(params.items())))]
        assert received.notices == [], received.notices
