"""The booking-sync workload: who sends what, signed how, and to which endpoints it goes.

3 partners x 10 tenants = 30 sources, each partner with its own signature scheme:

* A signs Standard Webhooks (``webhook-id``/``-timestamp``/``-signature``, a ``whsec_`` secret);
* B signs like GitHub (``x-hub-signature-256: sha256=<hex>``; event id in JSON ``id``, type in
  JSON ``event``);
* C signs like Shopify (``x-shopify-hmac-sha256: <base64>``; event id in the header
  ``x-shopify-webhook-id``, type in JSON ``topic``).

Bodies are JSON of about 600 bytes about one of 1,000 bookings (``data.booking_id``), each booking
belonging to one source. Every event carries ``data.ref`` (the partner's event id, unique in a
run) and ``data.seq`` (per booking, increasing in the order the partner sends), so a receiver can
tell which event it got and whether a booking's events arrived in order. 10 % of events are sent
twice (same id, same body), as partners do. Each tenant has two endpoints subscribed to ``*``, so
every event is delivered twice.

Everything is deterministic from the seed, secrets included: a benchmark, not a deployment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

PARTNERS = ("A", "B", "C")
TENANTS = 10
ENDPOINTS_PER_TENANT = 2
BOOKING_KEYS = 1000
DUPLICATE_RATIO = 0.10
# How far (in requests) after the original a duplicate is re-sent, at most.
DUPLICATE_SPREAD = 200
TOLERANCE_SECONDS = 300
EVENT_TYPES = ("booking.created", "booking.updated", "booking.updated", "booking.cancelled")

# Where each partner keeps the event id, type, key and data: Interlink's per-source envelope, and
# the same facts the baseline reads with hand-written code.
ENVELOPES: dict[str, dict[str, Any]] = {
    "A": {
        "id_from": "header:webhook-id",
        "type_path": "type",
        "key_path": "data.booking_id",
        "data_path": "data",
    },
    "B": {
        "id_from": "json:id",
        "type_path": "event",
        "key_path": "data.booking_id",
        "data_path": "data",
    },
    "C": {
        "id_from": "header:x-shopify-webhook-id",
        "type_path": "topic",
        "key_path": "data.booking_id",
        "data_path": "data",
    },
}
HMAC_CONFIGS: dict[str, dict[str, Any]] = {
    "B": {"header": "x-hub-signature-256", "algorithm": "sha256", "encoding": "hex",
          "prefix": "sha256="},
    "C": {"header": "x-shopify-hmac-sha256", "algorithm": "sha256", "encoding": "base64"},
}  # fmt: skip


@dataclass(frozen=True)
class SourceSpec:
    index: int
    partner: str
    tenant: int
    secret: str

    @property
    def name(self) -> str:
        return f"partner-{self.partner.lower()}-t{self.tenant:02d}"


@dataclass(frozen=True)
class EndpointSpec:
    index: int
    tenant: int
    secret: str  # whsec_: what the endpoint verifies deliveries with


@dataclass(frozen=True)
class Workload:
    seed: int
    sources: tuple[SourceSpec, ...]
    endpoints: tuple[EndpointSpec, ...]
    keys: int = BOOKING_KEYS
    duplicate_ratio: float = DUPLICATE_RATIO

    @classmethod
    def make(cls, seed: int = 7) -> Workload:
        rng = random.Random(seed)

        def whsec() -> str:
            return "whsec_" + base64.b64encode(rng.randbytes(32)).decode()

        def token() -> str:
            return base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")

        sources = tuple(
            SourceSpec(
                index=tenant * len(PARTNERS) + p,
                partner=partner,
                tenant=tenant,
                secret=whsec() if partner == "A" else token(),
            )
            for tenant in range(TENANTS)
            for p, partner in enumerate(PARTNERS)
        )
        endpoints = tuple(
            EndpointSpec(index=tenant * ENDPOINTS_PER_TENANT + e, tenant=tenant, secret=whsec())
            for tenant in range(TENANTS)
            for e in range(ENDPOINTS_PER_TENANT)
        )
        return cls(seed, sources, endpoints)

    def endpoints_of(self, tenant: int) -> list[EndpointSpec]:
        return [e for e in self.endpoints if e.tenant == tenant]

    def source_of_key(self, key_index: int) -> SourceSpec:
        return self.sources[key_index % len(self.sources)]


def booking_key(index: int) -> str:
    return f"bk_{index:04d}"


# signing, as each partner does it -----------------------------------------------------------------


def sign_standard_webhooks(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def partner_headers(
    source: SourceSpec, ref: str, event_type: str, body: bytes, timestamp: int
) -> list[tuple[str, str]]:
    """The headers partner ``source.partner`` sends with ``body``."""
    headers = [("content-type", "application/json")]
    if source.partner == "A":
        headers += [
            ("webhook-id", ref),
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", sign_standard_webhooks(source.secret, ref, timestamp, body)),
        ]
    elif source.partner == "B":
        digest = hmac.new(source.secret.encode(), body, hashlib.sha256).hexdigest()
        headers += [
            ("x-hub-signature-256", "sha256=" + digest),
            ("x-github-event", event_type.split(".")[0]),
        ]
    else:
        raw = hmac.new(source.secret.encode(), body, hashlib.sha256).digest()
        headers += [
            ("x-shopify-hmac-sha256", base64.b64encode(raw).decode()),
            ("x-shopify-webhook-id", ref),
            ("x-shopify-topic", event_type.replace("booking.", "bookings/")),
        ]
    return headers


# generating the stream ---------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """One POST a partner makes: to ``source``, about event ``ref``; ``dup`` if a re-send."""

    source: int
    ref: str
    dup: bool
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Event:
    source: SourceSpec
    ref: str
    event_type: str
    body: bytes


_encode = msgspec.json.Encoder().encode
_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Eun-ji", "Farid", "Greta", "Hiro", "Ines", "Jonas")
_CITIES = ("Lisbon", "Porto", "Faro", "Madrid", "Sevilla", "Valencia", "Nice", "Lyon")


@dataclass
class Generator:
    """Makes the partners' requests; state (refs, per-booking seq) carries over between calls."""

    workload: Workload
    stream_seed: int = 1
    _rng: random.Random = field(init=False)
    _next_ref: int = field(default=0, init=False)
    _seq: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.workload.seed * 1_000_003 + self.stream_seed)
        self._seq = [0] * self.workload.keys

    def _event(self, now: float) -> _Event:
        rng = self._rng
        key_index = rng.randrange(self.workload.keys)
        source = self.workload.source_of_key(key_index)
        self._seq[key_index] += 1
        self._next_ref += 1
        ref = f"ev{self.stream_seed:02d}{self._next_ref:09d}"
        event_type = rng.choice(EVENT_TYPES)
        guest = rng.choice(_NAMES)
        nights = rng.randint(1, 14)
        stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        data = {
            "booking_id": booking_key(key_index),
            "seq": self._seq[key_index],
            "ref": ref,
            "status": "cancelled" if event_type == "booking.cancelled" else "confirmed",
            "property": {
                "id": f"prop_{key_index % 97:03d}",
                "name": f"{rng.choice(_CITIES)} Riverside Apartments",
                "unit": f"{chr(65 + key_index % 6)}-{key_index % 40 + 1:02d}",
            },
            "guest": {
                "name": f"{guest} Example",
                "email": f"{guest.lower()}.{key_index}@guests.example.com",
                "phone": f"+351 21 {rng.randint(1_000_000, 9_999_999)}",
                "adults": rng.randint(1, 4),
                "children": rng.randint(0, 3),
            },
            "stay": {"check_in": "2025-07-01", "check_out": f"2025-07-{1 + nights:02d}",
                     "nights": nights},
            "price": {"currency": "EUR", "paid": "0.00",
                      "total": f"{rng.randint(80, 4000)}.{rng.randint(0, 99):02d}"},
            "channel": rng.choice(("direct", "marketplace", "agency")),
            "notes": rng.choice(("late check-in, after 22:00", "cot requested", "no notes")),
            "updated_at": stamp,
        }  # fmt: skip
        if source.partner == "A":
            payload: dict[str, Any] = {"type": event_type, "timestamp": stamp, "data": data}
        elif source.partner == "B":
            payload = {"id": ref, "event": event_type, "created_at": stamp, "data": data}
        else:
            payload = {"topic": event_type, "created_at": stamp, "data": data}
        return _Event(source, ref, event_type, _encode(payload))

    def requests(self, events: int, now: float) -> list[Request]:
        """``events`` new events (and their duplicates), signed with timestamp ``now``.

        The timestamp only matters for partner A (Standard Webhooks); it stays valid for the
        whole tolerance (300 s), longer than any single load step.
        """
        timestamp = int(now)
        out: list[Request] = []
        pending: dict[int, list[_Event]] = {}
        for position in range(1, events + 1):
            event = self._event(now)
            out.append(self._request(event, False, timestamp))
            if self._rng.random() < self.workload.duplicate_ratio:
                at = position + self._rng.randint(1, DUPLICATE_SPREAD)
                pending.setdefault(at, []).append(event)
            for dup in pending.pop(position, ()):
                out.append(self._request(dup, True, timestamp))
        for at in sorted(pending):
            for dup in pending[at]:
                out.append(self._request(dup, True, timestamp))
        return out

    @staticmethod
    def _request(event: _Event, dup: bool, timestamp: int) -> Request:
        headers = partner_headers(event.source, event.ref, event.event_type, event.body, timestamp)
        return Request(event.source.index, event.ref, dup, headers, event.body)
