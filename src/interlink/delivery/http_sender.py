"""Sends one delivery over HTTP and reports what came of it as an :class:`AttemptResult`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from interlink.delivery.guarded_session import GuardedSession
from interlink.delivery.outbound_guard import BlockedDestination, OutboundPolicy, check_url
from interlink.domain.delivery import AttemptOutcome, AttemptResult, classify_status
from interlink.domain.retry_after import parse_retry_after

__all__ = ["HttpSender"]

_READ_CHUNK = 1024
_CHECKED_URLS = 10_000  # endpoint URLs are configuration: few, so the memo stays small
# A pooled keep-alive connection the receiver closed while it sat idle (uvicorn closes them after
# 5 s) fails as soon as it is written to: the request never reached an application. Such a
# failure on a reused connection is sent again at once, on another connection, and is not an
# attempt; a pool can hold several stale ones, hence more than one try.
_STALE_TRIES = 3
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def _reuse_tracer() -> aiohttp.TraceConfig:
    """Marks a request's trace context when aiohttp hands it a pooled connection."""

    async def reused(_: object, context: object, __: object) -> None:
        context.trace_request_ctx["reused"] = True  # type: ignore[attr-defined]

    config = aiohttp.TraceConfig()
    config.on_connection_reuseconn.append(reused)
    return config


def _stale(exc: BaseException, probe: dict[str, bool]) -> bool:
    # A failure to connect is the receiver's, whatever the pool held: never retried here.
    return (
        probe["reused"]
        and isinstance(exc, _STALE)
        and not isinstance(exc, aiohttp.ClientConnectorError)
    )


class HttpSender:
    """POSTs delivery bodies to receivers through one pooled, SSRF-guarded aiohttp session."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        max_connections: int = 1000,
        response_excerpt_bytes: int = 2048,
        connect_timeout: float = 5.0,
        user_agent: str = "Interlink/0.1",
        name_service: AbstractResolver | None = None,
    ) -> None:
        self._policy = policy
        self._guarded = GuardedSession(
            policy,
            max_connections=max_connections,
            user_agent=user_agent,
            # Compressed replies would need decompressing just to show a short excerpt, and are
            # a way to make a small response expand into a large one.
            headers={"Accept-Encoding": "identity"},
            name_service=name_service,
            trace_configs=[_reuse_tracer()],
        )
        self._excerpt_bytes = response_excerpt_bytes
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._checked_urls: dict[str, tuple[URL, str | None]] = {}

    async def start(self) -> None:
        self._session = self._guarded.get()

    async def close(self) -> None:
        self._session = None
        await self._guarded.close()

    def _check(self, url: str) -> tuple[URL, str | None]:
        """The URL parsed once, with why it is refused (or None). The verdict on a URL is fixed
        for a policy (names are checked again at every resolution), so it is kept."""
        try:
            # Hand aiohttp the same URL object, so the guard and the client cannot disagree
            # about which host it names.
            target = URL(url)
            check_url(target, self._policy)
            verdict: tuple[URL, str | None] = (target, None)
        except (BlockedDestination, ValueError) as exc:
            verdict = (URL(), str(exc))
        if len(self._checked_urls) >= _CHECKED_URLS:
            self._checked_urls.clear()
        self._checked_urls[url] = verdict
        return verdict

    # The timeout is per receiver and part of the dispatcher's Sender contract.
    async def send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> AttemptResult:
        """POST ``body`` to ``url``; never raises for network problems or refused destinations.

        The outcome follows the status code once one arrives, even if reading the excerpt of
        the body then fails or runs out of time: the receiver has already answered.
        """
        if self._session is None:
            raise RuntimeError("HttpSender.send called before start()")
        session = self._session
        started = time.perf_counter()

        def elapsed_ms() -> float:
            return (time.perf_counter() - started) * 1000.0

        def error(message: str) -> AttemptResult:
            return AttemptResult(
                outcome=AttemptOutcome.ERROR,
                status_code=None,
                latency_ms=elapsed_ms(),
                error=message,
            )

        checked = self._checked_urls.get(url)
        if checked is None:
            checked = self._check(url)
        target, refusal = checked
        if refusal is not None:
            return error(refusal)

        request_headers: CIMultiDict[str] = CIMultiDict(headers)
        request_headers.setdefault("Content-Type", "application/json")
        connect_timeout = min(self._connect_timeout, timeout)
        client_timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        loop = asyncio.get_running_loop()
        # aiohttp rounds timeouts of 5 s and more up to whole seconds; this deadline is exact.
        deadline = loop.time() + timeout

        try:
            async with asyncio.timeout_at(deadline):
                for tries_left in range(_STALE_TRIES - 1, -1, -1):
                    probe = {"reused": False}
                    try:
                        response = await session.post(
                            target,
                            data=body,
                            headers=request_headers,
                            allow_redirects=False,
                            timeout=client_timeout,
                            trace_request_ctx=probe,
                        )
                        break
                    except _STALE as exc:
                        if not (tries_left and _stale(exc, probe)):
                            raise
        except BlockedDestination as exc:
            return error(str(exc))
        except aiohttp.ConnectionTimeoutError:
            return error(f"timed out connecting after {connect_timeout:g} s")
        except TimeoutError:
            return error(f"timed out after {timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return error(_describe(exc))

        try:
            status = response.status
            retry_after = None
            if status == 429 or status >= 500 or 300 <= status < 400:
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            excerpt, body_error = await self._read_excerpt(response, deadline, timeout)
        finally:
            # Closing (not releasing) drops the connection instead of draining a body that may
            # be huge or never end.
            if not response.content.at_eof():
                response.close()
            else:
                response.release()

        return AttemptResult(
            outcome=classify_status(status),
            status_code=status,
            latency_ms=elapsed_ms(),
            error=body_error,
            response_excerpt=excerpt,
            retry_after=retry_after,
        )

    async def _read_excerpt(
        self, response: aiohttp.ClientResponse, deadline: float, timeout_s: float
    ) -> tuple[str | None, str | None]:
        buffer = bytearray()
        problem: str | None = None
        try:
            async with asyncio.timeout_at(deadline):
                while len(buffer) < self._excerpt_bytes:
                    want = min(_READ_CHUNK, self._excerpt_bytes - len(buffer))
                    chunk = await response.content.read(want)
                    if not chunk:
                        break
                    buffer += chunk
        except TimeoutError:
            problem = f"timed out after {timeout_s:g} s reading the response body"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            problem = f"reading the response body failed: {_describe(exc)}"
        text = bytes(buffer).decode("utf-8", errors="replace") if buffer else None
        return text, problem


def _describe(exc: BaseException) -> str:
    """A short message for a network failure; never includes request headers."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {exc.host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host} was not accepted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake with {exc.host}:{exc.port} failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without a response"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc.description or exc.url}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # Its str() carries the request info; keep only what the receiver sent.
        return f"invalid response: {exc.message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _os_reason(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return error.strerror or str(error) or type(error).__name__
