"""Celery app and the delivery task: POST one event to one endpoint, Standard Webhooks-signed.

Configured the way a careful team would:

* Redis broker, JSON serializer, no result backend (``ignore_result``: nobody reads results);
* ``acks_late`` + ``reject_on_worker_lost``: a message is acknowledged only after the task ran,
  so a worker killed mid-delivery leaves it to be redelivered (at-least-once, like Interlink);
  ``task_acks_on_failure_or_timeout`` stays True, so a task that gave up is not redelivered
  forever;
* retries with the same schedule as Interlink's default (immediately, 5 s, 5 min, 30 min, 2 h,
  5 h, 10 h, 10 h, ±20 % jitter); 2xx succeeds, 410 stops, anything else retries;
* the ``webhook-id`` is the event id given at ingest, the same on every retry;
* one pooled ``httpx.Client`` per worker process (keep-alive; made after the fork).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import time
from typing import Any

import httpx
from celery import Celery

from bench.baselines.fastapi_celery.config import load

CONFIG = load()
QUEUE = "deliveries"
RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
TIMEOUT_SECONDS = 15.0

app = Celery("baseline", broker=CONFIG.redis_url)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    task_default_queue=QUEUE,
    # The default visibility timeout (1 h) would make a lost worker's message wait an hour;
    # deliveries time out after 15 s, so 5 minutes is safe and recovers sooner.
    broker_transport_options={"visibility_timeout": 300},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

_client: httpx.Client | None = None


def client() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
    return _client


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class DeliveryFailed(Exception):
    pass


def backoff(retries_done: int) -> float:
    base = RETRY_SCHEDULE[min(retries_done + 1, len(RETRY_SCHEDULE) - 1)]
    return max(0.0, base + random.uniform(-base * JITTER, base * JITTER))


@app.task(
    name="deliver",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=len(RETRY_SCHEDULE) - 1,
    ignore_result=True,
)
def deliver(self: Any, url: str, secret: str, msg_id: str, payload: str) -> None:
    body = payload.encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    try:
        status = client().post(url, content=body, headers=headers).status_code
    except httpx.HTTPError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from None
    if 200 <= status < 300 or status == 410:
        return
    raise self.retry(exc=DeliveryFailed(f"HTTP {status}"), countdown=backoff(self.request.retries))


@app.task(name="consume", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def consume(payload: str) -> None:
    """bench.pull's consumer: one event handed to a handler that only counts it."""
    from bench.pull_handler import count

    count()
