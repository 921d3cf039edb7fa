"""How a simulated partner signs and sends a webhook: the demo's partner and the partner
simulator both send through this, in the signature scheme of the source they send to.

Signatures are made by the verifiers' own signing code (``standard_webhooks.sign``,
``hmac_scheme.sign_hmac``), so what a simulator sends is exactly what ingest checks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from interlink.ingress.verifiers import hmac_scheme, standard_webhooks

__all__ = ["Answer", "WebhookPoster", "WebhookSigner"]


class WebhookSigner:
    """Signing headers of one scheme with one secret: ``standard_webhooks`` or ``hmac``."""

    def __init__(
        self, secret: str, scheme: str = "standard_webhooks", config: Mapping[str, Any] = {}
    ) -> None:
        if scheme == "standard_webhooks":
            standard_webhooks.validate_secret(secret)
        elif scheme == "hmac":
            hmac_scheme.parse_config(config)  # ValueError now rather than at the first send
        else:
            raise ValueError(f"a simulated partner cannot sign with '{scheme}'")
        self.scheme = scheme
        self._secret = secret
        self._config = dict(config)

    def headers(self, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {"content-type": "application/json"}
        if self.scheme == "standard_webhooks":
            headers[standard_webhooks.ID_HEADER] = webhook_id
            headers[standard_webhooks.TIMESTAMP_HEADER] = str(ts)
            headers[standard_webhooks.SIGNATURE_HEADER] = standard_webhooks.sign(
                self._secret, webhook_id, ts, body
            )
            return headers
        cfg = hmac_scheme.parse_config(self._config)
        headers[cfg.header] = hmac_scheme.sign_hmac(self._secret, body, self._config, ts)
        if cfg.timestamp_header is not None:
            headers[cfg.timestamp_header] = str(ts)
        return headers


class Answer(msgspec.Struct, frozen=True):
    """What one POST came to. ``status`` is None when no response arrived."""

    status: int | None
    body: dict[str, Any]
    detail: str | None = None

    @property
    def duplicate(self) -> bool:
        return (
            self.status is not None
            and 200 <= self.status < 300
            and self.body.get("duplicate") is True
        )


class WebhookPoster:
    """POSTs signed bodies to one ingest URL over one connection pool; never raises for HTTP
    or network trouble — that is in the answer."""

    def __init__(self, url: str, signer: WebhookSigner, *, timeout: float = 10.0) -> None:
        self.url = url
        self.signer = signer
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookPoster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(
        self, webhook_id: str, body: bytes, *, signer: WebhookSigner | None = None
    ) -> Answer:
        headers = (signer or self.signer).headers(webhook_id, body)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=False
            )
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(None, {}, str(exc) or type(exc).__name__)
        answer = _json_object(raw)
        if 200 <= status < 300:
            return Answer(status, answer)
        detail = answer.get("detail") or answer.get("title") or raw[:200].decode(errors="replace")
        return Answer(status, answer, str(detail))


def _json_object(raw: bytes) -> dict[str, Any]:
    with contextlib.suppress(msgspec.DecodeError):
        value = msgspec.json.decode(raw)
        if isinstance(value, dict):
            return value
    return {}
