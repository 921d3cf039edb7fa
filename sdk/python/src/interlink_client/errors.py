"""What the client raises: the server's problem+json (RFC 9457) as an exception, one class per
kind of answer a caller handles differently, and the transport's failures."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec


class InterlinkError(Exception):
    """Every error the client raises."""


class TransportError(InterlinkError):
    """Interlink could not be reached or did not answer (connection refused, timeout): nothing
    is known about whether the request took effect; retry it with the same idempotency keys."""


class ApiError(InterlinkError):
    """Interlink answered with an error: the problem+json's ``status``, ``type``, ``title``,
    ``detail`` and ``errors`` (the failing paths of a 422), and the whole ``body``."""

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        errors: list[Any],
        body: dict[str, Any],
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors
        self.body = body

    @property
    def retryable(self) -> bool:
        """Worth sending again unchanged: the server was unavailable or rate-limited."""
        return self.status in (429, 502, 503, 504)


class BadRequest(ApiError):
    """400: a malformed body, a missing or wrongly typed field."""


class Unauthorized(ApiError):
    """401: no API key, or one Interlink does not know."""


class Forbidden(ApiError):
    """403: the key may not do this (the admin key on a tenant's operation)."""


class NotFound(ApiError):
    """404: no such resource for this tenant."""


class Conflict(ApiError):
    """409: the resource's state does not allow it (retrying a delivery that succeeded)."""


class PayloadTooLarge(ApiError):
    """413: too many events in a batch, or a body over the limit."""


class Unprocessable(ApiError):
    """422: a rule the document cannot state (a catalog schema, a private URL): see ``errors``."""


class ServerError(ApiError):
    """5xx: Interlink failed or is unavailable (503); nothing was acknowledged."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
}


def api_error(response: httpx.Response) -> ApiError:
    """The exception for an error answer; a body that is not problem+json (a proxy's page)
    still gives its status and text."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:500]}
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    errors = body.get("errors")
    return cls(
        status,
        str(body.get("type", "about:blank")),
        str(body.get("title", response.reason_phrase)),
        str(body.get("detail", "")),
        errors if isinstance(errors, list) else [],
        body,
    )
