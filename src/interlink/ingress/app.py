"""``POST /in/{source_id}``: the lean ASGI ingest route.

Watermark → size cap → verify signature and timestamp → parse → dedupe and persist (group
commit) → 202.
Nothing here normalizes or routes; the answer waits only for the durable write.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import msgspec
import structlog
from opentelemetry.trace import INVALID_SPAN, Span

from interlink import problems
from interlink.domain import json_input
from interlink.domain.envelope import EnvelopeError, extract
from interlink.domain.ids import new_id
from interlink.domain.models import Event, Source
from interlink.ingress.group_commit import GroupCommit
from interlink.ingress.verifiers import SourceVerifier, VerificationError, prepare
from interlink.ingress.watermark import Watermark
from interlink.observability import tracing
from interlink.observability.metrics import Metrics, rejection_reason
from interlink.storage.management import Management
from interlink.storage.ports import Appended
from interlink.storage.tenancy import system_scope

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = structlog.get_logger("interlink.ingress")

# Headers kept with the event for audit and replay: the envelope and signature families partners
# use. Credentials are never stored (the event API shows these headers): not Authorization or
# cookies, not a header named like a credential (x-api-key, x-auth-token), and not one that
# carries one of the source's secrets (a partner that sends the shared secret itself, as
# GitLab's X-Gitlab-Token does, whatever the header is called).
_KEPT_PREFIXES = ("webhook-", "svix-", "x-", "stripe-")
_KEPT = frozenset({"content-type", "user-agent"})
_CREDENTIAL_WORDS = ("token", "secret", "password", "passwd", "credential", "auth", "cookie")
_CREDENTIAL_NAMES = frozenset({"x-api-key", "x-apikey"})
_MAX_KEPT_HEADERS = 40
_MAX_HEADER_VALUE = 1024
_SOURCE_TTL = 2.0


class _Reject(Exception):
    def __init__(
        self, status: int, detail: str, kind: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.kind = status, detail, kind
        self.retry_after = retry_after


class SourceCache:
    """Sources change rarely and every request needs one: a short-lived cache, misses too.

    Each entry keeps the source's verifier ready (config parsed once), and the whole cache is
    dropped when this process changes a source (a rotated secret counts at once).
    """

    def __init__(self, management: Management, ttl: float = _SOURCE_TTL) -> None:
        self._management = management
        self._ttl = ttl
        self._entries: dict[str, tuple[float, tuple[Source, SourceVerifier] | None]] = {}
        self._version = management.sources_version

    async def lookup(self, source_id: str) -> tuple[Source, SourceVerifier] | None:
        """The live source with this id and its verifier, or None."""
        now = time.monotonic()
        if self._version != self._management.sources_version:
            self._version = self._management.sources_version
            self._entries.clear()
        hit = self._entries.get(source_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        # The source id is what names the tenant here: the lookup comes before any tenant.
        with system_scope("ingest: source lookup"):
            source = await self._management.get_source(source_id)
        found = None
        if source is not None:
            verifier = prepare(
                source.verifier, source.verifier_config, source.secrets, source.tolerance_seconds
            )
            found = (source, verifier)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[source_id] = (now + self._ttl, found)
        return found

    async def get(self, source_id: str) -> Source | None:
        found = await self.lookup(source_id)
        return None if found is None else found[0]


def kept_headers(headers: dict[str, str], secrets: Sequence[str] = ()) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if not (name in _KEPT or name.startswith(_KEPT_PREFIXES)) or _credential(
            name, value, secrets
        ):
            continue
        kept[name] = value[:_MAX_HEADER_VALUE]
        if len(kept) >= _MAX_KEPT_HEADERS:
            break
    return kept


def _credential(name: str, value: str, secrets: Sequence[str]) -> bool:
    return (
        name in _CREDENTIAL_NAMES
        or any(word in name for word in _CREDENTIAL_WORDS)
        or any(secret and secret in value for secret in secrets)
    )


class _Request:
    """What one ingest request came to, for its metrics and its span."""

    __slots__ = ("appended", "source_id", "span")

    def __init__(self) -> None:
        self.source_id: str | None = None
        self.appended: Appended | None = None
        self.span: Span = INVALID_SPAN


class IngestApp:
    def __init__(
        self,
        sources: SourceCache,
        commit: GroupCommit,
        metrics: Metrics | None = None,
        watermark: Watermark | None = None,
    ) -> None:
        self._sources = sources
        self._commit = commit
        self._metrics = metrics
        self._watermark = watermark

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = _Request()
        reason: str | None = None
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, body, ctype = await self._handle(scope, receive, request)
        except _Reject as reject:
            status = reject.status
            body = problems.encode(problems.problem(reject.status, reject.detail, reject.kind))
            ctype = problems.CONTENT_TYPE
            reason = rejection_reason(reject.status, reject.kind)
            if reject.status == 405:
                extra.append((b"allow", b"POST"))
            if reject.retry_after is not None:
                extra.append((b"retry-after", str(reject.retry_after).encode()))
        except Exception:
            request_id = problems.new_request_id()
            log.exception(
                "ingest.unexpected_error", request_id=request_id, source_id=request.source_id
            )
            status, body = 500, problems.encode(problems.internal_error(request_id))
            extra.append((problems.REQUEST_ID_HEADER.encode(), request_id.encode()))
            ctype = problems.CONTENT_TYPE
            reason = rejection_reason(500, None)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        appended = request.appended
        if self._metrics is not None:
            outcome = "rejected"
            if appended is not None:
                outcome = "duplicate" if appended.duplicate else "accepted"
            self._metrics.ingest(request.source_id, outcome, reason, time.perf_counter() - started)
        tracing.end_ingest_span(
            request.span,
            status,
            event_id=appended.event_id if appended else None,
            duplicate=appended.duplicate if appended else None,
            reason=reason,
        )

    async def _handle(
        self, scope: Scope, receive: Receive, request: _Request
    ) -> tuple[int, bytes, str]:
        if scope["method"] != "POST":
            raise _Reject(405, "webhooks are sent with POST")
        source_id = scope["path"].removeprefix("/in/").strip("/")
        try:
            found = await self._sources.lookup(source_id) if source_id else None
        except Exception as exc:
            # The database is down (or restarting): nothing can be stored, say so plainly.
            log.warning("ingest.source_lookup_failed", source_id=source_id[:64], error=repr(exc))
            raise _Reject(
                503, "the event store is unavailable; retry later", "unavailable"
            ) from None
        if found is None:
            raise _Reject(404, f"no source '{source_id[:64]}'", "unknown-source")
        source, verify = found
        request.source_id = source.id
        breach = self._watermark.breach if self._watermark is not None else None
        if breach is not None:
            # Before the body is read: a sender told to come back later need not upload it.
            raise _Reject(503, breach.detail, "over-watermark", breach.retry_after_seconds)
        return await self._accept(source, verify, scope, receive, request)

    async def _accept(
        self,
        source: Source,
        verify: SourceVerifier,
        scope: Scope,
        receive: Receive,
        request: _Request,
    ) -> tuple[int, bytes, str]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request.span, traceparent = tracing.start_ingest_span(headers, source.id)
        body = await _read_body(headers, receive, source.max_body_bytes)
        now = time.time()
        try:
            verify(body, headers, now)
        except VerificationError as exc:
            log.info(
                "ingest.rejected",
                tenant_id=source.tenant_id,
                source_id=source.id,
                reason="signature",
                detail=str(exc),
            )
            raise _Reject(
                401, f"signature verification failed: {exc}", "invalid-signature"
            ) from None
        try:
            payload = json_input.decode(body)
        except json_input.InvalidJson as exc:
            raise _Reject(400, f"malformed JSON: {exc}", "malformed-json") from None
        if not isinstance(payload, dict):
            raise _Reject(400, "the payload must be a JSON object", "malformed-json")
        try:
            fields = extract(payload, body, headers, source.envelope)
        except EnvelopeError as exc:
            raise _Reject(422, str(exc), "invalid-envelope") from None

        event = Event(
            id=new_id("event"),
            tenant_id=source.tenant_id,
            source_id=source.id,
            idempotency_key=fields.idempotency_key,
            type=fields.type,
            key=fields.key,
            received_at=now,
            occurred_at=fields.occurred_at,
            data=fields.data,
            raw=body,
            headers=kept_headers(headers, [s.value for s in source.secrets]),
            trace_context=traceparent,
        )
        try:
            appended = await self._commit.submit(event)
        except Exception as exc:
            log.warning(
                "ingest.unavailable",
                tenant_id=source.tenant_id,
                source_id=source.id,
                error=type(exc).__name__,
            )
            raise _Reject(
                503, "the event store is unavailable; retry later", "unavailable"
            ) from None
        request.appended = appended
        answer = msgspec.json.encode({"id": appended.event_id, "duplicate": appended.duplicate})
        return 202, answer, "application/json"


async def _read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Reject(413, f"the body is larger than this source's limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Reject(400, "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Reject(413, f"the body is larger than this source's limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
