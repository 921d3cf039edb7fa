"""The destination port: what the dispatcher sends a claimed delivery through, by endpoint kind.

One dispatcher claims every dispatched kind's deliveries through the same lanes (breaker, slots,
rate limit, per-key ordering) and settles them with the same rule (domain/delivery.decide); only
the last step, getting the body to the endpoint, differs: an HTTP POST signed as a Standard
Webhook (HttpDestination, over the Sender), or a record produced to a topic
(delivery/kafka_destination.py). Each answers an AttemptResult, so retries, dead letters,
redrive and replay need nothing of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from interlink.domain.delivery import AttemptResult
from interlink.storage.ports import Claimed


class Sender(Protocol):
    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> AttemptResult: ...


class Destination(Protocol):
    async def deliver(self, c: Claimed, body: bytes, trace: dict[str, str]) -> AttemptResult:
        """Sends ``body`` (the webhook envelope) for ``c``; ``trace`` holds the trace context's
        headers. Answers once the endpoint's side has the delivery, or why it does not."""
        ...


Sign = Callable[[str, str, int, bytes], dict[str, str]]


class HttpDestination:
    """A push endpoint: the body POSTed to its URL, signed with its live secrets."""

    def __init__(self, sender: Sender, sign: Sign) -> None:
        self._sender = sender
        self._sign = sign

    async def deliver(self, c: Claimed, body: bytes, trace: dict[str, str]) -> AttemptResult:
        # webhook-id is the event id: stable across retries, so receivers can dedupe.
        # The signature's timestamp is the wall clock's: the receiver checks it against its own.
        headers = self._sign(c.secret, c.event_id, int(time.time()), body)
        headers.update(trace)
        return await self._sender.send(c.url, body, headers, c.timeout_seconds)
