"""The dispatcher: claims due deliveries, sends them, settles the outcomes in batches.

A slow or failing receiver holds one concurrency slot until its timeout and nothing else; the
retry schedule lives in the database, so a restart resumes every pending retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import msgspec
import structlog

from interlink.clock import SYSTEM, Clock
from interlink.delivery.destinations import Destination, HttpDestination, Sender, Sign
from interlink.delivery.transforming import delivered_data
from interlink.domain.delivery import AttemptOutcome, AttemptResult, decide
from interlink.domain.models import EndpointKind
from interlink.domain.retry import RetryPolicy
from interlink.domain.transforms import TransformError
from interlink.observability import tracing
from interlink.observability.delivery_log import DeliveryLog
from interlink.storage.ports import Claimed, DeliveryQueue, Settled

log = structlog.get_logger("interlink.dispatcher")

__all__ = ["Dispatcher", "Sender", "webhook_body"]


def webhook_body(event_type: str, received_at: float, data: bytes) -> bytes:
    """The Standard Webhooks payload; ``data`` is spliced in as stored, never re-encoded."""
    timestamp = datetime.fromtimestamp(received_at, UTC).isoformat().replace("+00:00", "Z")
    head = msgspec.json.encode({"type": event_type, "timestamp": timestamp})
    return head[:-1] + b',"data":' + data + b"}"


class Dispatcher:
    def __init__(
        self,
        deliveries: DeliveryQueue,
        sender: Sender,
        sign: Sign,
        *,
        destinations: Mapping[EndpointKind, Destination] | None = None,
        concurrency: int = 256,
        lease_seconds: float = 120.0,
        poll_interval: float = 1.0,
        on_settled: Callable[[Settled], None] | None = None,
        clock: Clock = SYSTEM,
        delivery_log: DeliveryLog | None = None,
    ) -> None:
        self.delivery_log = delivery_log or DeliveryLog()
        self._clock = clock
        self._deliveries = deliveries
        # Push endpoints go through the HTTP destination; other kinds through theirs, if given.
        self._destinations: dict[EndpointKind, Destination] = {
            EndpointKind.PUSH: HttpDestination(sender, sign),
            **(destinations or {}),
        }
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._on_settled = on_settled
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._settled: list[Settled] = []
        self._settle_wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="settle")
        try:
            while True:
                free = self._concurrency - len(self._in_flight)
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                self._wake.clear()
                try:
                    # A lease outlives an attempt on the wall clock, whatever the clock's pace.
                    claimed = await self._deliveries.claim_due(
                        self._clock.now(), free, self._clock.from_real(self._lease_seconds)
                    )
                except Exception:
                    log.exception("dispatcher.claim_failed")
                    await asyncio.sleep(self._poll_interval)
                    continue
                for c in claimed:
                    task = asyncio.create_task(self._attempt(c))
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
                if len(claimed) == free:
                    continue
                await self._sleep_until_due()
        finally:
            await self._drain()

    async def _sleep_until_due(self) -> None:
        timeout = self._poll_interval
        with contextlib.suppress(Exception):
            due = await self._deliveries.next_due_at()
            if due is not None:
                wait = self._clock.real_seconds(due - self._clock.now())
                timeout = min(timeout, max(0.0, wait))
        if timeout <= 0:
            # Due but not claimable (held by a lease): yield once rather than spin.
            timeout = 0.01
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatcher.attempt_crashed", error=repr(task.exception()))

    async def _attempt(self, c: Claimed) -> None:
        started = self._clock.now()
        try:
            data = delivered_data(c)
        except TransformError as exc:
            # Nothing is sent: an attempt that failed here, with the reason, retried on the
            # endpoint's schedule (a transformation changed meanwhile gets its chance).
            self._settle_unsent(c, started, str(exc))
            return
        body = webhook_body(c.event_type, c.received_at, data)
        # Log lines here name their ids themselves: binding them per attempt (contextvars)
        # cost about a tenth of the CPU near the ceiling, for lines that are rarely written.
        with tracing.attempt_span(
            c.trace_context,
            c.endpoint_id,
            delivery_id=c.delivery_id,
            event_id=c.event_id,
            attempt=c.attempt_count + 1,
        ) as span:
            trace: dict[str, str] = {}
            tracing.inject(trace)
            destination = self._destinations.get(c.kind)
            if destination is None:
                # A kind this process cannot send (no Kafka configured here): an attempt that
                # failed, retried on schedule, rather than a delivery stuck in flight.
                result = AttemptResult(
                    AttemptOutcome.FAILED, None, 0.0, error=f"no {c.kind} destination here"
                )
            else:
                result = await destination.deliver(c, body, trace)
            tracing.record_attempt(span, result.outcome, result.status_code, result.error)
        decision = decide(c.attempt_count, result, RetryPolicy(schedule=c.retry_schedule))
        self._settled.append(Settled(c, started, result, decision))
        self._settle_wake.set()

    def _settle_unsent(self, c: Claimed, started: float, reason: str) -> None:
        result = AttemptResult(AttemptOutcome.ERROR, None, 0.0, error=reason)
        decision = decide(c.attempt_count, result, RetryPolicy(schedule=c.retry_schedule))
        self._settled.append(Settled(c, started, result, decision))
        self._settle_wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._settle_wake.wait()
            self._settle_wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._settled = self._settled, []
        if not batch:
            return
        try:
            notices = await self._deliveries.settle(batch, self._clock.now())
        except Exception:
            # Not settled means still leased: the lease lapses and the delivery is sent again.
            log.exception("dispatcher.settle_failed", count=len(batch))
            return
        self.delivery_log.settled(batch, notices, time.monotonic())
        if self._on_settled is not None:
            for s in batch:
                self._on_settled(s)
        # Every settlement frees lane slots and may close a breaker: deliveries deferred behind
        # them can go now, so look again rather than wait out their pacing.
        self.wake()

    async def _drain(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            await self._flush()
