"""The metrics facade: bounded labels, the right series for each call, /metrics answers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from interlink.domain.delivery import AttemptOutcome, AttemptResult, Decision, DeliveryStatus
from interlink.observability.metrics import (
    REJECTION_REASONS,
    Metrics,
    MetricsEndpoint,
    rejection_reason,
    status_class,
)
from interlink.storage.ports import Claimed, Settled


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_ingest_counts_outcomes_and_reasons() -> None:
    m = Metrics()
    m.ingest("src_1", "accepted", seconds=0.002)
    m.ingest("src_1", "accepted", seconds=0.004)
    m.ingest("src_1", "duplicate", seconds=0.001)
    m.ingest("src_1", "rejected", "signature")
    assert value(m, "interlink_ingest_requests_total", source_id="src_1", outcome="accepted") == 2
    assert value(m, "interlink_ingest_requests_total", source_id="src_1", outcome="duplicate") == 1
    assert value(m, "interlink_ingest_requests_total", source_id="src_1", outcome="rejected") == 1
    assert value(m, "interlink_ingest_rejections_total", source_id="src_1", reason="signature") == 1
    assert value(m, "interlink_ingest_ack_seconds_count") == 3  # 202 answers only
    assert value(m, "interlink_ingest_ack_seconds_bucket", le="0.0025") == 2


def test_a_sender_chosen_source_id_never_becomes_a_label() -> None:
    m = Metrics()
    m.ingest("src_whatever_the_sender_typed", "rejected", "unknown_source")
    m.ingest("/in/../etc", "rejected", "method")
    m.ingest(None, "rejected", "malformed")
    assert value(m, "interlink_ingest_requests_total", source_id="unknown", outcome="rejected") == 3
    labels = {
        s.labels["source_id"]
        for f in m.registry.collect()
        for s in f.samples
        if "source_id" in s.labels
    }
    assert labels == {"unknown"}


def test_unknown_enums_are_refused() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="outcome"):
        m.ingest("src_1", "maybe")
    with pytest.raises(ValueError, match="reason"):
        m.ingest("src_1", "rejected", "cosmic-rays")
    with pytest.raises(ValueError, match="result"):
        m.settled("ep_1", "lost")


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (401, "invalid-signature", "signature"),
        (413, None, "too_large"),
        (400, "malformed-json", "malformed"),
        (400, None, "incomplete"),
        (422, "invalid-envelope", "envelope"),
        (404, "unknown-source", "unknown_source"),
        (405, None, "method"),
        (503, "unavailable", "unavailable"),
    ],
)
def test_rejection_reason(status: int, kind: str | None, reason: str) -> None:
    assert rejection_reason(status, kind) == reason
    assert reason in REJECTION_REASONS


@pytest.mark.parametrize(
    ("outcome", "code", "cls"),
    [
        (AttemptOutcome.SUCCEEDED, 204, "2xx"),
        (AttemptOutcome.FAILED, 301, "3xx"),
        (AttemptOutcome.FAILED, 429, "4xx"),
        (AttemptOutcome.FAILED, 503, "5xx"),
        (AttemptOutcome.ERROR, None, "error"),
        (AttemptOutcome.GONE, 410, "gone"),
        (AttemptOutcome.FAILED, 999, "error"),
    ],
)
def test_status_class(outcome: AttemptOutcome, code: int | None, cls: str) -> None:
    assert status_class(outcome, code) == cls


def settled(status: DeliveryStatus, outcome: AttemptOutcome, code: int | None) -> Settled:
    claimed = Claimed(
        delivery_id="dlv_1",
        tenant_id="tnt_1",
        event_id="evt_1",
        endpoint_id="ep_1",
        attempt_count=0,
        lease_until=0.0,
        event_type="t",
        event_data=b"{}",
        received_at=1000.0,
        url="https://example.com",
        secret="whsec_x",
        timeout_seconds=5.0,
        retry_schedule=(0.0,),
    )
    return Settled(
        claimed,
        1001.0,
        AttemptResult(outcome, code, latency_ms=120.0),
        Decision(status, 1, None),
    )


def test_record_settled_counts_attempt_and_result() -> None:
    m = Metrics()
    m.record_settled(settled(DeliveryStatus.SCHEDULED, AttemptOutcome.FAILED, 503), now=1002.0)
    m.record_settled(settled(DeliveryStatus.SUCCEEDED, AttemptOutcome.SUCCEEDED, 200), now=1003.0)
    m.record_settled(settled(DeliveryStatus.DEAD, AttemptOutcome.GONE, 410), now=1004.0)
    m.record_settled(settled(DeliveryStatus.DEAD, AttemptOutcome.ERROR, None), now=1005.0)
    attempts = "interlink_delivery_attempts_total"
    for cls in ("5xx", "2xx", "gone", "error"):
        assert value(m, attempts, endpoint_id="ep_1", status_class=cls) == 1, cls
    results = "interlink_deliveries_total"
    assert value(m, results, endpoint_id="ep_1", result="retried") == 1
    assert value(m, results, endpoint_id="ep_1", result="succeeded") == 1
    assert value(m, results, endpoint_id="ep_1", result="dead") == 2
    assert value(m, "interlink_delivery_attempt_seconds_count", endpoint_id="ep_1") == 4
    assert value(m, "interlink_delivery_attempt_seconds_sum", endpoint_id="ep_1") == pytest.approx(
        0.48
    )
    # Received at 1000, succeeded at 1003.
    assert value(m, "interlink_delivery_end_to_end_seconds_sum") == 3.0
    assert value(m, "interlink_delivery_end_to_end_seconds_count") == 1


def test_volume_gauge_and_forgetting_a_source() -> None:
    m = Metrics()
    m.set_volume_dropped("src_1", True)
    assert value(m, "interlink_source_volume_dropped", source_id="src_1") == 1
    m.set_volume_dropped("src_1", False)
    assert value(m, "interlink_source_volume_dropped", source_id="src_1") == 0
    m.forget_source("src_1")
    m.forget_source("src_never_seen")
    assert value(m, "interlink_source_volume_dropped", source_id="src_1") is None


async def scrape(
    endpoint: MetricsEndpoint, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/metrics", "headers": headers or []}
    await endpoint(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


async def test_metrics_endpoint_serves_the_text_format() -> None:
    m = Metrics()
    m.ingest("src_1", "accepted", seconds=0.01)
    status, headers, body = await scrape(MetricsEndpoint(m))
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["interlink_ingest_requests"].type == "counter"
    assert "interlink_ingest_requests_created" not in body.decode()  # no *_created series
    assert (await scrape(MetricsEndpoint(m), method="POST"))[0] == 405


async def test_metrics_endpoint_with_a_token() -> None:
    endpoint = MetricsEndpoint(Metrics(), token="s3cret-token")
    assert (await scrape(endpoint))[0] == 401
    wrong = [(b"authorization", b"Bearer nope")]
    assert (await scrape(endpoint, headers=wrong))[0] == 401
    right = [(b"authorization", b"Bearer s3cret-token")]
    assert (await scrape(endpoint, headers=right))[0] == 200


def test_multiprocess_mode_merges_processes(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, two processes' counts add up in one scrape."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from interlink.observability.metrics import Metrics, MetricsEndpoint
        from prometheus_client import generate_latest
        m = Metrics()
        m.ingest("src_1", "accepted", seconds=0.01)
        if sys.argv[1] == "scrape":
            print(generate_latest(MetricsEndpoint(m).registry()).decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = [sys.executable, "-c", script]
    subprocess.run([*run, "count"], env=env, check=True, timeout=60)
    out = subprocess.run(
        [*run, "scrape"], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(out)
        for s in f.samples
    }
    key = ("interlink_ingest_requests_total", (("outcome", "accepted"), ("source_id", "src_1")))
    assert samples[key] == 2
    assert samples[("interlink_ingest_ack_seconds_count", ())] == 2


def test_kafka_produced_counts_latency_and_errors() -> None:
    m = Metrics()
    m.kafka_produced("main", 0.004, None)
    m.kafka_produced("main", 1.5, "_MSG_TIMED_OUT")
    r = m.registry
    assert r.get_sample_value("interlink_kafka_produce_seconds_count", {"cluster": "main"}) == 2
    errors = {"cluster": "main", "error": "_MSG_TIMED_OUT"}
    assert r.get_sample_value("interlink_kafka_produce_errors_total", errors) == 1
    assert status_class(AttemptOutcome.SUCCEEDED, None) == "acked"
