"""The simulated partner's bookings and what goes wrong with its webhooks (pure, seeded).

Each booking lives a legal life in the shape of Alpha PMS (the ``pms_alpha`` kit): created
(``PENDING`` or ``CONFIRMED``), confirmed, modified a few times, maybe cancelled — every change a
new ``revision``. The changes of all bookings are interleaved (each booking's own order kept),
then the faults are planned: some webhooks dropped, some sent twice, windows of sends shuffled.
The same seed gives the same story and the same faults, so a test can reason about what was
sent and what was not.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import msgspec

__all__ = ["Change", "Faults", "Plan", "Send", "interleave", "plan_sends", "stories"]

_GUESTS = (
    ("Ada", "Lovelace"),
    ("Alan", "Turing"),
    ("Grace", "Hopper"),
    ("Edsger", "Dijkstra"),
    ("Barbara", "Liskov"),
    ("Margaret", "Hamilton"),
)
# Partner status by the kit's canonical state: what the partner writes in its payloads.
STATUS = {"tentative": "PENDING", "confirmed": "CONFIRMED", "cancelled": "CANCELLED"}
STATE_OF = {v: k for k, v in STATUS.items()}


class Change(msgspec.Struct, frozen=True):
    """One change of one booking: the partner's event name and the reservation after it."""

    booking_id: str
    event: str  # reservation.created | reservation.modified | reservation.cancelled
    reservation: dict[str, Any]

    @property
    def revision(self) -> int:
        return int(self.reservation["revision"])

    @property
    def state(self) -> str:
        return STATE_OF[self.reservation["status"]]


class Faults(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    drop: float = 0.0  # this fraction of the webhooks is never sent
    duplicate: float = 0.0  # this fraction is sent a second time, a few sends later
    reorder: int = 0  # sends are shuffled within windows of this many (0 or 1: in order)
    delay: float = 0.0  # seconds between two sends

    def __post_init__(self) -> None:
        if not (0 <= self.drop <= 1 and 0 <= self.duplicate <= 1):
            raise ValueError("drop and duplicate are fractions between 0 and 1")
        if self.reorder < 0 or self.delay < 0:
            raise ValueError("reorder and delay may not be negative")


class Send(msgspec.Struct, frozen=True):
    webhook_id: str
    change: Change
    duplicate: bool = False  # a second send of the same webhook (same id and body)


class Plan(msgspec.Struct, frozen=True):
    sends: list[Send]
    dropped: list[Change]
    reordered: int  # sends that left their place in the order of the changes


def stories(rng: random.Random, count: int, prefix: str = "AR-") -> list[list[Change]]:
    """``count`` bookings, each a list of its changes in order."""
    return [_story(rng, f"{prefix}{n + 1}") for n in range(count)]


def _story(rng: random.Random, booking_id: str) -> list[Change]:
    first, last = rng.choice(_GUESTS)
    arrival = date(2026, 6, 1) + timedelta(days=rng.randint(0, 120))
    reservation: dict[str, Any] = {
        "id": booking_id,
        "property_id": rng.randint(1, 40),
        "status": "PENDING" if rng.random() < 0.5 else "CONFIRMED",
        "revision": 1,
        "arrival": arrival.isoformat(),
        "departure": (arrival + timedelta(days=rng.randint(1, 10))).isoformat(),
        "guests": rng.randint(1, 6),
        "guest": {"first_name": first, "last_name": last},
        "total": {"amount": f"{rng.randint(80, 2000)}.{rng.randint(0, 99):02d}", "currency": "eur"},
    }
    changes = [Change(booking_id, "reservation.created", dict(reservation))]

    def change(event: str, **fields: Any) -> None:
        reservation.update(fields, revision=reservation["revision"] + 1)
        changes.append(Change(booking_id, event, dict(reservation)))

    if reservation["status"] == "PENDING" and rng.random() < 0.8:
        change("reservation.modified", status="CONFIRMED")
    for _ in range(rng.randint(0, 2)):
        nights = rng.randint(1, 10)
        departure = date.fromisoformat(reservation["arrival"]) + timedelta(days=nights)
        change("reservation.modified", departure=departure.isoformat())
    if rng.random() < 0.4:
        change("reservation.cancelled", status="CANCELLED")
    return changes


def interleave(rng: random.Random, per_booking: list[list[Change]]) -> list[Change]:
    """All changes in one order, each booking's own changes in theirs."""
    queues = [list(reversed(s)) for s in per_booking if s]
    out: list[Change] = []
    while queues:
        i = rng.randrange(len(queues))
        out.append(queues[i].pop())
        if not queues[i]:
            queues[i] = queues[-1]
            queues.pop()
    return out


def plan_sends(rng: random.Random, changes: list[Change], faults: Faults, prefix: str) -> Plan:
    """Which webhooks go out, in which order: the drops, duplicates and shuffles of ``faults``."""
    sends: list[Send] = []
    dropped: list[Change] = []
    for n, c in enumerate(changes):
        if rng.random() < faults.drop:
            dropped.append(c)
            continue
        sends.append(Send(f"{prefix}{n + 1}", c))
    # A duplicate goes out a few sends after its original, as a partner's retry would.
    for send in [s for s in sends if rng.random() < faults.duplicate]:
        at = sends.index(send) + 1 + rng.randint(0, 5)
        sends.insert(min(at, len(sends)), Send(send.webhook_id, send.change, duplicate=True))
    reordered = 0
    if faults.reorder > 1:
        shuffled: list[Send] = []
        for start in range(0, len(sends), faults.reorder):
            window = sends[start : start + faults.reorder]
            mixed = rng.sample(window, len(window))
            reordered += sum(a is not b for a, b in zip(window, mixed, strict=True))
            shuffled.extend(mixed)
        sends = shuffled
    return Plan(sends, dropped, reordered)
