"""A simulated PMS (property management system) partner that sends booking webhooks.

Everything goes over real HTTP to an ingest URL (``http://host:port/in/{source_id}``), signed
the Standard Webhooks way. Some sends are deliberately not new events: a *duplicate* resends an
already accepted event with the same ``webhook-id`` and body (re-signed with a fresh timestamp,
as a partner retrying after a lost response would), and a *forged* one carries a signature made
with the wrong secret, so it must be rejected.
"""

from __future__ import annotations

import asyncio
import enum
import random
import secrets as _secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any

import msgspec

from interlink.ingress.verifiers import standard_webhooks
from interlink.partners.webhook_sender import WebhookPoster, WebhookSigner

__all__ = ["EVENT_TYPES", "PartnerStats", "SendKind", "SendResult", "SimulatedPartner"]

EVENT_TYPES = ("booking.created", "booking.updated", "booking.cancelled", "availability.updated")

_LISTINGS = tuple(f"lst_{n}" for n in (101, 102, 205, 207, 310, 314, 420, 512))
_GUESTS = (
    "Ada Lovelace",
    "Alan Turing",
    "Grace Hopper",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
    "Ken Thompson",
    "Frances Allen",
    "John McCarthy",
)
_RESEND_POOL = 1000


class SendKind(enum.StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # an accepted event again: same webhook-id and body
    FORGED = "forged"  # signed with the wrong secret


class SendResult(msgspec.Struct, frozen=True):
    """What one request came to. ``status`` is None when no response arrived."""

    kind: SendKind
    webhook_id: str
    event_type: str
    status: int | None
    duplicate: bool = False
    detail: str | None = None


@dataclass
class PartnerStats:
    sent: int = 0  # requests, of every kind
    sent_duplicates: int = 0
    sent_forged: int = 0
    accepted: int = 0  # 2xx for an event Interlink had not seen
    duplicates: int = 0  # 2xx with "duplicate": true: stored once, not again
    rejected: int = 0  # 4xx
    errors: int = 0  # 5xx or no response
    accepted_by_type: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)  # "401 <detail>" -> count
    last_error: str | None = None


@dataclass
class _Booking:
    booking_id: str
    listing_id: str
    guest: str
    check_in: date
    nights: int
    announced: bool = False

    def data(self, status: str) -> dict[str, Any]:
        return {
            "booking_id": self.booking_id,
            "listing_id": self.listing_id,
            "guest": self.guest,
            "check_in": self.check_in.isoformat(),
            "check_out": (self.check_in + timedelta(days=self.nights)).isoformat(),
            "status": status,
        }


@dataclass(frozen=True)
class _Sent:
    webhook_id: str
    event_type: str
    body: bytes


class SimulatedPartner:
    """Sends booking webhooks to ``ingest_url`` at ``rate`` events per second.

    Use it as an async context manager (or call :meth:`close`), then either drive it with
    :meth:`run` until an event is set or call :meth:`send_one` directly. Counters are in
    :attr:`stats`; ``on_result`` (if given) sees every :class:`SendResult`.
    """

    def __init__(
        self,
        ingest_url: str,
        secret: str,
        *,
        rate: float = 25.0,
        duplicate_ratio: float = 0.10,
        forged_ratio: float = 0.02,
        bookings: int = 40,
        max_concurrency: int = 64,
        timeout: float = 10.0,
        seed: int | None = None,
        id_prefix: str | None = None,
        on_result: Callable[[SendResult], None] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if not (0 <= duplicate_ratio <= 1 and 0 <= forged_ratio <= 1):
            raise ValueError("ratios must be between 0 and 1")
        if duplicate_ratio + forged_ratio > 1:
            raise ValueError("duplicate_ratio + forged_ratio may not exceed 1")
        if bookings < 1:
            raise ValueError("bookings must be at least 1")
        standard_webhooks.validate_secret(secret)
        self.ingest_url = ingest_url
        self.rate = rate
        self.duplicate_ratio = duplicate_ratio
        self.forged_ratio = forged_ratio
        self.stats = PartnerStats()
        self._signer = WebhookSigner(secret)
        # Any other valid secret: its signatures are well-formed but cannot match.
        self._forger = WebhookSigner(standard_webhooks.generate_secret())
        self._rng = random.Random(seed)
        self._prefix = id_prefix if id_prefix is not None else f"msg_{_secrets.token_hex(3)}_"
        self._counter = 0
        self._next_booking = 1000
        self._bookings = [self._new_booking() for _ in range(bookings)]
        self._accepted: deque[_Sent] = deque(maxlen=_RESEND_POOL)
        self._timeout = timeout
        self._poster = WebhookPoster(ingest_url, self._signer, timeout=timeout)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._on_result = on_result

    async def __aenter__(self) -> SimulatedPartner:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._poster.close()

    # sending -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sends at :attr:`rate` until ``stop`` is set, then waits for the requests under way.

        Requests overlap (up to ``max_concurrency``), so a slow answer does not lower the rate;
        when the partner falls behind it skips ahead instead of bursting to catch up.
        """
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[SendResult]] = set()
        next_at = loop.time()
        try:
            while not stop.is_set():
                delay = next_at - loop.time()
                if delay > 0:
                    # Short naps keep the reaction to ``stop`` quick at low rates.
                    await asyncio.sleep(min(delay, 0.1))
                    continue
                if delay < -1.0:
                    next_at = loop.time()
                next_at += 1.0 / self.rate
                await self._slots.acquire()
                task = asyncio.create_task(self._send_in_slot())
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            if pending:
                _, late = await asyncio.wait(pending, timeout=self._timeout)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    async def _send_in_slot(self) -> SendResult:
        try:
            return await self.send_one()
        finally:
            self._slots.release()

    async def send_one(self, kind: SendKind | None = None) -> SendResult:
        """Sends one request of ``kind`` (chosen by the configured ratios if None).

        Never raises for HTTP or network trouble: that is counted and reported in the result.
        A duplicate asked for before any event was accepted is sent as a new event instead.
        """
        if kind is None:
            kind = self._pick_kind()
        if kind is SendKind.DUPLICATE and not self._accepted:
            kind = SendKind.NEW
        if kind is SendKind.DUPLICATE:
            original = self._rng.choice(self._accepted)
            webhook_id, event_type, body = original.webhook_id, original.event_type, original.body
            signer = self._signer
            self.stats.sent_duplicates += 1
        elif kind is SendKind.FORGED:
            webhook_id, event_type, body = self._forged_event()
            signer = self._forger
            self.stats.sent_forged += 1
        else:
            webhook_id, event_type, body = self._next_event()
            signer = self._signer
        self.stats.sent += 1
        answer = await self._poster.post(webhook_id, body, signer=signer)
        result = SendResult(
            kind,
            webhook_id,
            event_type,
            answer.status,
            duplicate=answer.duplicate,
            detail=answer.detail,
        )
        self._count(result, body)
        if self._on_result is not None:
            self._on_result(result)
        return result

    def _count(self, result: SendResult, body: bytes) -> None:
        stats = self.stats
        if result.status is None or result.status >= 500:
            stats.errors += 1
            stats.last_error = (
                f"{result.status} {result.detail}" if result.status else result.detail
            )
        elif result.status >= 400:
            stats.rejected += 1
            stats.rejections[f"{result.status} {result.detail}"] += 1
        elif result.duplicate:
            stats.duplicates += 1
        else:
            stats.accepted += 1
            stats.accepted_by_type[result.event_type] += 1
            self._accepted.append(_Sent(result.webhook_id, result.event_type, body))

    # events ------------------------------------------------------------------------------------

    def _pick_kind(self) -> SendKind:
        r = self._rng.random()
        if r < self.forged_ratio:
            return SendKind.FORGED
        if r < self.forged_ratio + self.duplicate_ratio:
            return SendKind.DUPLICATE
        return SendKind.NEW

    def _new_booking(self) -> _Booking:
        self._next_booking += 1
        return _Booking(
            booking_id=f"bk_{self._next_booking}",
            listing_id=self._rng.choice(_LISTINGS),
            guest=self._rng.choice(_GUESTS),
            check_in=date.today() + timedelta(days=self._rng.randint(3, 90)),
            nights=self._rng.randint(1, 10),
        )

    def _next_webhook_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter}"

    def _next_event(self) -> tuple[str, str, bytes]:
        """The next event of a coherent story: each booking is created, then updated or
        shifts availability a few times, then cancelled (and its slot goes to a new booking)."""
        slot = self._rng.randrange(len(self._bookings))
        booking = self._bookings[slot]
        if not booking.announced:
            booking.announced = True
            event_type, status = "booking.created", "confirmed"
        else:
            r = self._rng.random()
            if r < 0.6:
                booking.nights = max(1, booking.nights + self._rng.choice((-1, 1, 2)))
                event_type, status = "booking.updated", "confirmed"
            elif r < 0.85:
                event_type, status = "availability.updated", "blocked"
            else:
                event_type, status = "booking.cancelled", "cancelled"
                self._bookings[slot] = self._new_booking()
        return self._next_webhook_id(), event_type, _body(event_type, booking.data(status))

    def _forged_event(self) -> tuple[str, str, bytes]:
        # Someone who does not hold the secret tries to cancel a real booking.
        booking = self._rng.choice(self._bookings)
        event_type = "booking.cancelled"
        return self._next_webhook_id(), event_type, _body(event_type, booking.data("cancelled"))


def _body(event_type: str, data: dict[str, Any]) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return msgspec.json.encode({"type": event_type, "timestamp": now, "data": data})
