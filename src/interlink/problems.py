"""RFC 9457 problem details: every 4xx/5xx Interlink answers says what went wrong, one way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

import msgspec
import uuid_utils

CONTENT_TYPE = "application/problem+json"
# Sent with every answer to an unexpected error: the id its log line carries.
REQUEST_ID_HEADER = "x-request-id"


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str | None = None
    # Where a body broke a rule, when there are several places (a published batch's events):
    # objects such as {"index": 3, "path": "/data/guest", "message": "..."}.
    errors: list[dict[str, object]] | None = None


def problem(
    status: int,
    detail: str | None = None,
    kind: str | None = None,
    errors: list[dict[str, object]] | None = None,
) -> Problem:
    phrase = HTTPStatus(status).phrase
    slug = kind or phrase.lower().replace(" ", "-").replace("'", "")
    return Problem(
        type=f"https://interlink.dev/problems/{slug}",
        title=phrase,
        status=status,
        detail=detail,
        errors=errors,
    )


def new_request_id() -> str:
    return f"req_{uuid_utils.uuid7().hex}"


def internal_error(request_id: str) -> Problem:
    """The answer to an error nobody foresaw: nothing of it but the id of its log line."""
    return problem(
        500,
        f"an unexpected error occurred; the server's log has it under request id {request_id}",
        "internal-error",
    )


def encode(p: Problem) -> bytes:
    return msgspec.json.encode(p)


async def send(
    send: Callable[[Any], Awaitable[None]],
    p: Problem,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answers ``p`` over raw ASGI, for the few responders that are not Litestar's (metrics, a
    role this process does not serve): the same body, whatever answers."""
    body = encode(p)
    await send(
        {
            "type": "http.response.start",
            "status": p.status,
            "headers": [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
