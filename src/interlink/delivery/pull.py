"""Pull consumers: claims with a long poll, acks and nacks, over the dispatcher's queue.

A claim is ``DeliveryQueue.claim_due`` scoped to one pull endpoint, so a pull endpoint's lane
(concurrency, rate limit, breaker) and its ordered keys' heads hold exactly as for a push
endpoint. An answer is settled through ``DeliveryQueue.settle_held``: the push path's settlement,
refused whole when the lease it names is no longer the delivery's.

Long polls wait in one registry per process (``PullWaiters``): routing wakes an endpoint's
waiters when it creates deliveries for it (in-process), and one poller looks at the database for
every waiting endpoint at once, at most once a poll interval however many consumers wait, for
what routing cannot announce here (another process's deliveries, a lease that lapsed, a retry
coming due); on PostgreSQL the deliveries channel pokes it sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import structlog

from interlink.domain.models import EndpointKind
from interlink.domain.pull import Answer, lease_of, settle_answer
from interlink.domain.retry import RetryPolicy
from interlink.storage.deliveries import Deliveries, Held
from interlink.storage.management import Management
from interlink.storage.ports import Claimed, DeliveryQueue, Settled

log = structlog.get_logger("interlink.pull")


class PullWaiters:
    """The long polls of this process, by endpoint."""

    def __init__(
        self,
        probe: Callable[[Sequence[str], float], Awaitable[set[str]]],
        poll_interval: float = 1.0,
    ) -> None:
        self._probe = probe
        self._poll_interval = poll_interval
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._poke = asyncio.Event()
        self.closed = False
        self.probes = 0  # database queries the poller made (tests bound it)

    def notify(self, endpoint_ids: Iterable[str]) -> None:
        """Deliveries may be claimable on these endpoints: their waiters claim again."""
        for endpoint_id in endpoint_ids:
            for future in self._waiting.pop(endpoint_id, ()):
                if not future.done():
                    future.set_result(None)

    def notify_one(self, endpoint_id: str) -> None:
        """One delivery's worth may be claimable (an ack freed a key's next event, a nack's
        retry is due): one waiter claims again, not all of them — each claim is a query, and
        all but one would come back empty."""
        waiters = self._waiting.get(endpoint_id, set())
        for future in waiters:
            if not future.done():
                future.set_result(None)
                return

    def poke(self) -> None:
        """Look at the database now rather than at the next interval (a NOTIFY from another
        process)."""
        self._poke.set()

    def close(self) -> None:
        """Shutdown: every long poll answers now with what it has (nothing)."""
        self.closed = True
        self.notify(list(self._waiting))

    async def wait(self, endpoint_id: str, timeout: float) -> None:
        """Until the endpoint may have something, ``timeout`` passes or the server stops."""
        if self.closed or timeout <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(endpoint_id, set()).add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._waiting.get(endpoint_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiting[endpoint_id]

    async def run(self) -> None:
        """The poller: one query a poll interval for every endpoint someone waits on."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval)
            self._poke.clear()
            if not self._waiting:
                continue
            self.probes += 1
            try:
                ready = await self._probe(list(self._waiting), time.time())
            except Exception:
                log.exception("pull.probe_failed")
                continue
            self.notify(ready)


class NotPull(Exception):
    """The endpoint or the delivery's endpoint delivers by push."""


class LeaseLost(Exception):
    """The lease the answer names is not the delivery's (lapsed and claimed again, or
    settled already): nothing was settled."""


class Consumers:
    """What the consumer API does: claim (long poll), ack, nack."""

    def __init__(
        self,
        queue: DeliveryQueue,
        deliveries: Deliveries,
        management: Management,
        waiters: PullWaiters,
    ) -> None:
        self._queue = queue
        self._deliveries = deliveries
        self._management = management
        self.waiters = waiters

    async def claim(
        self,
        tenant_id: str,
        endpoint_id: str,
        limit: int,
        lease_seconds: float,
        wait_seconds: float,
    ) -> list[Claimed] | None:
        """Up to ``limit`` deliveries, waiting up to ``wait_seconds`` for the first; None when
        the tenant has no such endpoint."""
        endpoint = await self._management.get_endpoint(tenant_id, endpoint_id)
        if endpoint is None:
            return None
        if endpoint.kind is not EndpointKind.PULL:
            raise NotPull(f"endpoint '{endpoint_id}' is a push endpoint: its deliveries are sent")
        deadline = time.monotonic() + wait_seconds
        while True:
            now = time.time()
            claimed = await self._queue.claim_due(now, limit, lease_seconds, endpoint_id)
            left = deadline - time.monotonic()
            if claimed or left <= 0 or self.waiters.closed:
                return claimed
            await self.waiters.wait(endpoint_id, left)

    async def _held(self, tenant_id: str, delivery_id: str, lease: str) -> Held | None:
        """The delivery under this lease; None when the tenant has no such delivery. Raises
        NotPull or LeaseLost."""
        held = await self._deliveries.held(tenant_id, delivery_id)
        if held is None:
            return None
        if held.kind is not EndpointKind.PULL:
            raise NotPull(
                f"delivery '{delivery_id}' is to a push endpoint: the dispatcher settles it"
            )
        lease_until = lease_of(lease)
        if held.status != "in_flight" or lease_until is None or held.lease_until != lease_until:
            raise LeaseLost(_lost(delivery_id, held.status))
        return held

    async def extend(
        self, tenant_id: str, delivery_id: str, lease: str, seconds: float
    ) -> float | None:
        """The delivery's lease, ``seconds`` from now instead (a slow handler): its new end;
        None when the tenant has no such delivery. Raises NotPull or LeaseLost."""
        held = await self._held(tenant_id, delivery_id, lease)
        if held is None:
            return None
        extended = time.time() + seconds
        if not await self._queue.extend_lease(delivery_id, held.claimed.lease_until, extended):
            raise LeaseLost(_lost(delivery_id, "in_flight"))
        return extended

    async def answer(self, tenant_id: str, delivery_id: str, lease: str, answer: Answer) -> bool:
        """Settles the delivery as the answer says; False when the tenant has no such
        delivery. Raises NotPull or LeaseLost, having settled nothing."""
        held = await self._held(tenant_id, delivery_id, lease)
        if held is None:
            return False
        now = time.time()
        # No latency: the handler's time is the consumer's, and the lane learns no pace from it.
        result, decision = settle_answer(
            held.claimed.attempt_count,
            answer,
            0.0,
            RetryPolicy(schedule=held.claimed.retry_schedule),
        )
        settled = Settled(held.claimed, now, result, decision)
        if not await self._queue.settle_held(settled, now):
            raise LeaseLost(_lost(delivery_id, "in_flight"))
        # An ack frees a lane slot and may make the next of an ordered key its head; a nack's
        # retry may be due at once: a waiter of this process looks again.
        self.waiters.notify_one(held.claimed.endpoint_id)
        return True


def _lost(delivery_id: str, status: str) -> str:
    if status == "in_flight":
        why = "its lease lapsed and another claim holds it now"
    elif status in ("succeeded", "dead"):
        why = f"it is settled already ({status})"
    else:
        why = f"its lease lapsed (it is {status}, waiting to be claimed again)"
    return (
        f"delivery '{delivery_id}': this lease_id is not its current lease ({why});"
        " nothing was settled"
    )
