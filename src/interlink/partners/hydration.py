"""Thin notifications: which resources a partner's notification says to fetch, and the payload
the normalizer reads once they are fetched (pure; the fetching is partners/fetcher.py).

A kit whose partner sends only ``{"event": "booking.modified", "booking_id": "…"}`` declares in
``kit.toml``::

    [api]
    base_url = "https://api.partner.example/v2"  # a deployment may point it elsewhere
    partner = "gamma"                            # the tenant's connection of this partner

    [[api.fetch]]
    when = ["booking.*"]                         # partner types (patterns); omitted: all
    path = "bookings/{booking_id}"               # GET this, placeholders from the notification
    into = "booking"                             # where the fetched body goes in the payload

The normalizer (a mapping like any other) then reads ``booking.status`` as if the partner had
sent it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import msgspec
from yarl import URL

from interlink.domain.envelope import lookup
from interlink.domain.patterns import InvalidPattern, matches_any, validate_pattern

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
MAX_FETCHES = 10  # per notification: a kit asking for more is a mistake, not a need


class FetchRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    into: str
    when: list[str] | None = None


class PartnerApi(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base_url: str
    partner: str | None = None  # the connections' ``partner``; unset: the kit's name
    fetch: list[FetchRule] = msgspec.field(default_factory=list)


class Fetch(msgspec.Struct, frozen=True):
    """One GET a notification needs: the path under the API's base URL, and where it goes."""

    path: str
    into: str


class NotificationError(ValueError):
    """The notification lacks what the kit needs to know what to fetch."""


def check_api(api: PartnerApi) -> PartnerApi:
    """The declaration, if it is sound; ValueError naming what is wrong (at kit load)."""
    url = URL(api.base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"api.base_url {api.base_url!r} is not an http(s) URL")
    if not api.fetch:
        raise ValueError("[api] needs at least one [[api.fetch]] rule")
    if len(api.fetch) > MAX_FETCHES:
        raise ValueError(f"[api] has more than {MAX_FETCHES} fetch rules")
    for i, rule in enumerate(api.fetch):
        where = f"[[api.fetch]] #{i + 1}"
        if not _PLACEHOLDER.search(rule.path):
            raise ValueError(f"{where} path {rule.path!r} names no field of the notification")
        if any(not name for name in _PLACEHOLDER.findall(rule.path)):
            raise ValueError(f"{where} path {rule.path!r} has an empty placeholder")
        if rule.path.startswith("/") or "//" in rule.path or ".." in rule.path.split("/"):
            raise ValueError(f"{where} path {rule.path!r} must be relative to api.base_url")
        if not rule.into or not all(rule.into.split(".")):
            raise ValueError(f"{where} into {rule.into!r} must be a dotted field name")
        for pattern in rule.when or ():
            try:
                validate_pattern(pattern)
            except InvalidPattern as exc:
                raise ValueError(f"{where} when: {exc}") from None
    return api


def fetches(api: PartnerApi, partner_type: str, payload: Any) -> list[Fetch]:
    """The GETs this notification needs (none for a type no rule names)."""
    out = []
    for rule in api.fetch:
        if rule.when is not None and not matches_any(rule.when, partner_type):
            continue
        out.append(Fetch(_path(rule.path, payload), rule.into))
    return out


def _path(template: str, payload: Any) -> str:
    def value(match: re.Match[str]) -> str:
        found = lookup(payload, match[1])
        if isinstance(found, bool) or not isinstance(found, str | int) or found == "":
            raise NotificationError(
                f"the notification has no resource id (text or number) at '{match[1]}'"
            )
        # One path segment whatever it holds: an id with '/' or '..' cannot reach another route.
        return quote(str(found), safe="")

    return _PLACEHOLDER.sub(value, template)


def hydrated(payload: Any, fetched: Sequence[tuple[Fetch, Any]]) -> dict[str, Any]:
    """The notification with each fetched body put where its rule says."""
    if not isinstance(payload, Mapping):
        raise NotificationError("the notification is not a JSON object")
    out: dict[str, Any] = dict(payload)
    for fetch, body in fetched:
        *parents, last = fetch.into.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[last] = body
    return out
