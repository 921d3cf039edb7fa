"""The baseline's ingest: a FastAPI app that verifies, dedupes and enqueues, then answers 202.

Per request: look up the source → size cap (413) → verify the partner's signature with plain
``hmac``/``base64`` (401; Standard Webhooks with the same ±300 s tolerance) → parse JSON (400) →
read the partner's event id and type (422) → dedupe with Redis ``SET NX EX`` on (source, event
id): a duplicate answers 202 with the first event's id → enqueue one Celery task per endpoint of
the tenant → 202. If enqueueing fails, the dedupe key is removed (so the partner's retry is not
taken for a duplicate) and the answer is 503.

Celery's publish is blocking I/O; by default it runs in Starlette's thread pool (``enqueue:
"thread"``), the careful way to call blocking code from an ``async def`` route.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bench.baselines.fastapi_celery.config import Endpoint, Source
from bench.baselines.fastapi_celery.tasks import CONFIG, QUEUE, deliver

MAX_BODY_BYTES = 1024 * 1024
DEDUPE_SECONDS = 7 * 24 * 3600

app = FastAPI(title="baseline ingest", openapi_url=None, docs_url=None, redoc_url=None)
redis = aioredis.from_url(CONFIG.redis_url, max_connections=256)


class Rejected(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def problem(status: int, detail: str) -> Response:
    return JSONResponse(
        {"status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(401, "signature is not valid base64") from None


def verify_standard_webhooks(source: Source, headers: Any, body: bytes, now: float) -> None:
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise Rejected(401, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > CONFIG.tolerance_seconds:
        raise Rejected(401, "timestamp missing or outside the tolerance")
    key = base64.b64decode(source.secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version == "v1" and hmac.compare_digest(_b64(encoded), expected):
            return
    raise Rejected(401, "no signature matched")


def verify_hmac(source: Source, header: str | None, body: bytes) -> None:
    if not header:
        raise Rejected(401, "missing signature header")
    digest = hmac.new(source.secret.encode(), body, hashlib.sha256)
    if source.partner == "B":  # GitHub-style: sha256=<hex>
        if not hmac.compare_digest(header, "sha256=" + digest.hexdigest()):
            raise Rejected(401, "no signature matched")
    elif not hmac.compare_digest(_b64(header), digest.digest()):  # Shopify-style: base64
        raise Rejected(401, "no signature matched")


def verify(source: Source, headers: Any, body: bytes, now: float) -> None:
    if source.partner == "A":
        verify_standard_webhooks(source, headers, body, now)
    elif source.partner == "B":
        verify_hmac(source, headers.get("x-hub-signature-256"), body)
    else:
        verify_hmac(source, headers.get("x-shopify-hmac-sha256"), body)


def envelope(source: Source, headers: Any, payload: dict[str, Any]) -> tuple[str, str]:
    """The partner's event id and the event type."""
    if source.partner == "A":
        event_id, event_type = headers.get("webhook-id"), payload.get("type")
    elif source.partner == "B":
        event_id, event_type = payload.get("id"), payload.get("event")
    else:
        event_id, event_type = headers.get("x-shopify-webhook-id"), payload.get("topic")
    if not isinstance(event_id, str | int) or not str(event_id):
        raise Rejected(422, "no event id")
    if not isinstance(event_type, str) or not event_type:
        raise Rejected(422, "no event type")
    return str(event_id), event_type


def enqueue(endpoints: list[Endpoint], event_id: str, message: str) -> None:
    for endpoint in endpoints:
        deliver.apply_async(args=(endpoint.url, endpoint.secret, event_id, message), queue=QUEUE)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    await redis.ping()
    return {"status": "ok"}


@app.post("/in/{source_id}", status_code=202)
async def ingest(source_id: str, request: Request) -> Response:
    source = CONFIG.sources.get(source_id)
    if source is None:
        return problem(404, f"no source {source_id!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return problem(413, "body too large")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return problem(413, "body too large")
    now = time.time()
    try:
        verify(source, request.headers, body, now)
        try:
            payload = json.loads(body)
        except ValueError:
            raise Rejected(400, "malformed JSON") from None
        if not isinstance(payload, dict):
            raise Rejected(400, "the payload must be a JSON object")
        partner_id, event_type = envelope(source, request.headers, payload)
    except Rejected as exc:
        return problem(exc.status, str(exc))

    event_id = "evt_" + uuid.uuid4().hex
    dedupe_key = f"dedupe:{source_id}:{partner_id}"
    try:
        first = await redis.set(dedupe_key, event_id, nx=True, ex=DEDUPE_SECONDS)
        if not first:
            existing = await redis.get(dedupe_key)
            existing_id = existing.decode() if existing else event_id
            return JSONResponse({"id": existing_id, "duplicate": True}, status_code=202)
    except Exception:
        return problem(503, "dedupe store unavailable; retry later")

    stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    data = payload.get("data", payload)
    message = json.dumps(
        {"type": event_type, "timestamp": stamp, "data": data}, separators=(",", ":")
    )
    endpoints = CONFIG.endpoints.get(source.tenant, [])
    try:
        if CONFIG.enqueue == "inline":
            enqueue(endpoints, event_id, message)
        else:
            await run_in_threadpool(enqueue, endpoints, event_id, message)
    except Exception:
        await redis.delete(dedupe_key)
        return problem(503, "queue unavailable; retry later")
    return JSONResponse({"id": event_id, "duplicate": False}, status_code=202)
