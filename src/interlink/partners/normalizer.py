"""What a normalizer takes and gives: a partner's payload in, canonical events out (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec


class MappingError(ValueError):
    """The payload cannot be normalized; the message says which field and why."""


class Inbound(msgspec.Struct, frozen=True):
    """A partner's event as received: the parsed body and the headers kept with it."""

    payload: Any
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    received_at: float | None = None


class Canonical(msgspec.Struct, frozen=True):
    """One canonical event made from a partner's payload (its schema version set later)."""

    type: str
    key: str | None
    occurred_at: float | None
    data: dict[str, Any]


class Normalizer(Protocol):
    def normalize(self, inbound: Inbound) -> list[Canonical]:
        """The canonical events of this payload, in order; MappingError if it cannot be done."""
        ...
