"""One partner payload through its kit: inbound schema → normalizer → catalog schema (pure).

What fails is ``Rejected`` with the stage it failed at and a reason an operator can act on; the
normalization stage quarantines it. Contract tests run exactly this.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from interlink.catalog.catalog import EventCatalog, UnknownEventType
from interlink.domain.envelope import MAX_KEY, EnvelopeError, check_identifier
from interlink.partners.kit import PartnerKit
from interlink.partners.normalizer import Inbound, MappingError

MAX_REASON = 1000


class Stage(enum.StrEnum):
    """Where an event stopped: the quarantine's ``stage``."""

    KIT = "kit"  # the source names a kit that is not installed
    INBOUND = "inbound_schema"  # the partner's payload is not the shape the kit expects
    MAPPING = "mapping"  # the normalizer could not map it
    SCHEMA = "schema"  # a canonical event fails its catalog schema
    TRANSITION = "transition"  # an illegal state transition (the kit's rule: quarantine)
    OUT_OF_ORDER = "out_of_order"  # older than what the entity already went through
    HELD = "held"  # an illegal transition kept until a later event makes it legal
    FETCH = "fetch_failed"  # what a thin notification points at could not be fetched (retried)


class Rejected(Exception):
    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason[:MAX_REASON]


class Normalized(msgspec.Struct, frozen=True):
    """A canonical event, validated against the newest version of its type."""

    type: str
    version: int
    key: str | None
    occurred_at: float | None
    data: dict[str, Any]


def normalize(kit: PartnerKit, catalog: EventCatalog, inbound: Inbound) -> list[Normalized]:
    if kit.inbound is not None:
        errors = [
            f"{'/'.join(str(p) for p in e.instance_path) or '(root)'}: {e.message}"
            for e in kit.inbound.iter_errors(inbound.payload)
        ]
        if errors:
            raise Rejected(Stage.INBOUND, "; ".join(errors[:5]))
    try:
        events = kit.normalizer.normalize(inbound)
    except MappingError as exc:
        raise Rejected(Stage.MAPPING, str(exc)) from None
    except Exception as exc:  # a kit's own code: its bug must not stall the log behind it
        raise Rejected(
            Stage.MAPPING, f"the normalizer failed: {type(exc).__name__}: {exc}"
        ) from None
    out = []
    for index, event in enumerate(events):
        where = f"event #{index} ({event.type})"
        if event.key is not None:
            try:
                check_identifier("key", event.key, MAX_KEY)
            except EnvelopeError as exc:
                raise Rejected(Stage.MAPPING, f"{where}: {exc}") from None
        try:
            version = catalog.latest(event.type).version
        except UnknownEventType as exc:
            raise Rejected(Stage.SCHEMA, f"{where}: {exc}") from None
        errors = catalog.errors(event.type, version, event.data)
        if errors:
            raise Rejected(Stage.SCHEMA, f"{where} v{version}: " + "; ".join(errors))
        out.append(Normalized(event.type, version, event.key, event.occurred_at, event.data))
    return out
