"""Pull endpoints' pure parts: lease ids, a consumer's answer as an attempt, and the waiter
registry's wake-ups (with a probe function standing in for the database query it is given)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from interlink.delivery.pull import PullWaiters
from interlink.domain.delivery import AttemptOutcome, DeliveryStatus
from interlink.domain.pull import Answer, lease_id, lease_of, settle_answer
from interlink.domain.retry import RetryPolicy


@pytest.mark.parametrize("until", [1796528434.5143511, 1.7e9 + 1e-6, 0.1])
def test_a_lease_id_names_its_lease_exactly(until: float) -> None:
    assert lease_of(lease_id(until)) == until


@pytest.mark.parametrize("token", ["", "lse_", "lse_nonsense", "0x1.0p+0", "abc_0x1.0p+0"])
def test_a_token_no_claim_gave_names_no_lease(token: str) -> None:
    assert lease_of(token) is None


def test_an_ack_succeeds_and_a_nack_follows_the_retry_schedule_to_dead() -> None:
    policy = RetryPolicy(schedule=(0, 10), jitter=0)
    result, decision = settle_answer(0, Answer(True), 0.0, policy)
    assert (
        result.outcome is AttemptOutcome.SUCCEEDED and decision.status is DeliveryStatus.SUCCEEDED
    )
    result, decision = settle_answer(0, Answer(False, "boom"), 0.0, policy)
    assert result.error == "boom" and decision.status is DeliveryStatus.SCHEDULED
    assert decision.next_attempt_in == 10
    _, later = settle_answer(0, Answer(False, None, retry_after=60), 0.0, policy)
    assert later.next_attempt_in == 60 and later.attempt_count == 1  # no sooner than asked
    result, decision = settle_answer(1, Answer(False), 0.0, policy)
    assert result.error == "nacked by the consumer" and decision.status is DeliveryStatus.DEAD


async def test_waiters_wake_on_notify_on_their_probe_and_at_close() -> None:
    asked: list[list[str]] = []
    ready: set[str] = set()

    async def probe(endpoints: Sequence[str], now: float) -> set[str]:
        asked.append(sorted(endpoints))
        return ready & set(endpoints)

    waiters = PullWaiters(probe, poll_interval=0.05)
    poller = asyncio.create_task(waiters.run())
    try:
        a = [asyncio.create_task(waiters.wait("ep_a", 10)) for _ in range(10)]
        b = asyncio.create_task(waiters.wait("ep_b", 10))
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in [*a, b])
        assert asked and all(e == ["ep_a", "ep_b"] for e in asked)  # one query for all 11
        waiters.notify(["ep_a"])  # routing created deliveries for ep_a
        await asyncio.wait_for(asyncio.gather(*a), 1)
        assert not b.done()
        ready.add("ep_b")  # the probe finds something (another process's routing, a lapse)
        await asyncio.wait_for(b, 1)
        late = asyncio.create_task(waiters.wait("ep_c", 30))
        await asyncio.sleep(0.01)
        waiters.close()
        await asyncio.wait_for(late, 1)
        await asyncio.wait_for(waiters.wait("ep_c", 30), 1)  # closed: no waiting at all
    finally:
        poller.cancel()
