"""Which deliveries of an ``ordered`` endpoint may be sent now.

Per ordering key only the head — the lowest ``event_seq`` not yet done — may be sent, and only
while nothing of that key is in flight, so a receiver sees each key's events one at a time and
in log order. Keys are independent: a stuck key holds back nothing but itself. Deliveries without
a key carry no order and are sent whenever they are due.

The log position (``event_seq``) is the order: the router creates each key's deliveries in log
order, so no delivery ever appears behind a head that has already been sent. An operator's
replay of an older event is the one deliberate exception.

A head that exhausts its attempts is ``dead`` (``domain.delivery.decide``). With
``on_head_dead = wait`` that dead head stays the head and blocks its key until an operator
retries it (back to ``pending``), because sending the key's later events would let the
receiver apply them on top of a missing one. With ``skip`` the dead head is passed over and the
key's next event becomes the head.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable

import msgspec

from interlink.domain.delivery import DeliveryStatus


class Ordering(enum.StrEnum):
    UNORDERED = "unordered"
    ORDERED = "ordered"  # one at a time per key, in log order


class OnHeadDead(enum.StrEnum):
    WAIT = "wait"
    SKIP = "skip"


class PendingDelivery(msgspec.Struct, frozen=True):
    delivery_id: str
    key: str | None
    event_seq: int
    status: DeliveryStatus
    due_at: float


class Selection(msgspec.Struct, frozen=True):
    sendable: tuple[str, ...]  # delivery ids, earliest due first
    # key → the dead head that holds it back (``wait`` only): what an operator has to act on.
    blocked: dict[str, str]


def select_sendable(
    pending: Iterable[PendingDelivery],
    in_flight_keys: Collection[str],
    now: float,
    on_head_dead: OnHeadDead = OnHeadDead.WAIT,
) -> Selection:
    """The deliveries that may be sent at ``now``.

    ``pending`` is every delivery of the endpoint not yet succeeded (succeeded ones are
    ignored, so passing them is harmless) — dead ones included, they can be heads.
    ``in_flight_keys`` are keys with an attempt under way; a delivery whose status is
    ``in_flight`` is also the head of its key and is not due until its lease lapses, so the
    rule stays safe even if that set is incomplete.
    """
    heads: dict[str, PendingDelivery] = {}
    candidates: list[PendingDelivery] = []
    for d in pending:
        if d.status is DeliveryStatus.SUCCEEDED:
            continue
        if d.key is None:
            if d.status is not DeliveryStatus.DEAD and d.due_at <= now:
                candidates.append(d)
            continue
        if d.status is DeliveryStatus.DEAD and on_head_dead is OnHeadDead.SKIP:
            continue
        head = heads.get(d.key)
        if head is None or (d.event_seq, d.delivery_id) < (head.event_seq, head.delivery_id):
            heads[d.key] = d

    blocked: dict[str, str] = {}
    for key, head in heads.items():
        if head.status is DeliveryStatus.DEAD:
            blocked[key] = head.delivery_id
        elif key not in in_flight_keys and head.due_at <= now:
            candidates.append(head)
    candidates.sort(key=lambda d: (d.due_at, d.event_seq, d.delivery_id))
    return Selection(tuple(d.delivery_id for d in candidates), blocked)
