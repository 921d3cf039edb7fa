"""Identifiers: time-ordered UUIDv7 with a short type prefix, so an id says what it names."""

from __future__ import annotations

import secrets

import uuid_utils

PREFIXES = {
    "tenant": "tnt",
    "source": "src",
    "endpoint": "ep",
    "subscription": "sub",
    "event": "evt",
    "delivery": "dlv",
    "attempt": "att",
    "api_key": "key",
    "job": "job",
    "connection": "conn",
    "quarantine": "qtn",
    "reconciliation": "rcn",
    "segment": "seg",
}


def new_id(kind: str) -> str:
    """A time-ordered id (UUIDv7, hex) prefixed by its kind, e.g. ``evt_0192…``."""
    return f"{PREFIXES[kind]}_{uuid_utils.uuid7().hex}"


def new_secret(prefix: str, nbytes: int = 24) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def id_floor(kind: str, at: float) -> str:
    """The smallest id of ``kind`` made at or after ``at`` (epoch seconds): a UUIDv7 begins with
    its 48-bit millisecond time, so ids made later sort after it (a time range as an id range)."""
    return f"{PREFIXES[kind]}_{max(0, int(at * 1000)):012x}{'0' * 20}"
