"""RFC 9457 problem details: every 4xx/5xx Interlink answers says what went wrong, one way."""

from __future__ import annotations

from http import HTTPStatus

import msgspec

CONTENT_TYPE = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str | None = None


def problem(status: int, detail: str | None = None, kind: str | None = None) -> Problem:
    phrase = HTTPStatus(status).phrase
    slug = kind or phrase.lower().replace(" ", "-").replace("'", "")
    return Problem(
        type=f"https://interlink.dev/problems/{slug}", title=phrase, status=status, detail=detail
    )


def encode(p: Problem) -> bytes:
    return msgspec.json.encode(p)
