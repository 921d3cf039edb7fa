"""Erasure of a person's data: which events a subject selector matches, and what is kept.

A selector names a JSON path into an event's ``data`` (``guest.email``, with list indexes as
numbers: ``guests.0.email``) and the value that identifies the person. The value is never
stored: the job keeps its digest (SHA-256 over the tenant and the value's canonical JSON) and
compares digests, so neither the job row nor the erasure record it leaves holds what was
erased. The digest is salted with the tenant only: it proves which subject a record was for
to someone who knows the value, and reveals nothing to someone who does not guess it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

MAX_PATH_PARTS = 16
MAX_VALUE_CHARS = 1000
# What an erased event's data becomes: a JSON object that says so.
ERASED_DATA = b'{"erased": true}'
ERASED = "erased"  # the reason on cancelled deliveries, resolved quarantine entries
_PART = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")

Scalar = str | int | float | bool


class InvalidSelector(ValueError):
    pass


def parse_path(path: str) -> tuple[str, ...]:
    """``data.guest.email`` or ``guest.email`` (the leading ``data.`` is optional)."""
    parts = tuple(path.split("."))
    if parts and parts[0] == "data":
        parts = parts[1:]
    if not parts or len(parts) > MAX_PATH_PARTS:
        raise InvalidSelector(
            f"path must name 1 to {MAX_PATH_PARTS} fields of the event's data, "
            "e.g. data.guest.email"
        )
    for part in parts:
        if not _PART.fullmatch(part):
            raise InvalidSelector(
                f"path part {part[:40]!r} must be a field name or a list index "
                "(letters, digits, '_' or '-')"
            )
    return parts


def digest(tenant_id: str, value: Scalar) -> str:
    """The stored stand-in for the subject's value."""
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise InvalidSelector(f"equals must be at most {MAX_VALUE_CHARS} characters")
    material = tenant_id.encode() + b"\x00" + msgspec.json.encode(value)
    return hashlib.sha256(material).hexdigest()


def value_at(data: Any, path: tuple[str, ...]) -> Any:
    """What ``path`` names in ``data``, or ``_MISSING``."""
    here = data
    for part in path:
        if isinstance(here, dict):
            if part not in here:
                return _MISSING
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            return _MISSING
    return here


def matches(tenant_id: str, path: tuple[str, ...], value_digest: str, data: bytes) -> bool:
    """Whether an event's stored ``data`` (JSON bytes) holds the subject's value at ``path``."""
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    found = value_at(decoded, path)
    # Only a scalar can be the subject's value; bool is not an int here (True is not 1).
    if found is _MISSING or isinstance(found, dict | list) or found is None:
        return False
    return digest(tenant_id, found) == value_digest


_MISSING: Any = object()  # what value_at returns where the path leads nowhere
