"""Kafka endpoints against a real broker (scripts/kafka.sh), in process, on SQLite by default
and PostgreSQL with INTERLINK_TEST_BACKEND=postgres: records as deliveries (value, key,
headers), the operator's grants at creation (422s naming the field), a failing produce retried
through the endpoint's schedule, the adapter's metrics, and the destination on its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.canary import Sweep
from tests.integration.conftest import Harness, eventually, running, settings_for
from tests.kafka_support import new_topic, read_topic

from interlink.config import KafkaSettings
from interlink.delivery.kafka_destination import KafkaDestination
from interlink.delivery.kafka_producer import ConfluentProducers
from interlink.domain.delivery import AttemptOutcome
from interlink.domain.kafka import KafkaTarget
from interlink.domain.models import EndpointKind
from interlink.storage.ports import Claimed

Json = dict[str, Any]


def kafka_settings(bootstrap: str, **cluster: Any) -> Json:
    """Two clusters on the test broker: 'main' granted to every tenant for topics 'it-…',
    'locked' granted to a tenant that does not exist."""
    return {
        "clusters": {
            "main": {
                "bootstrap_servers": bootstrap,
                "grants": [{"tenant": "*", "topic_prefix": "it-"}],
                **cluster,
            },
            "locked": {"bootstrap_servers": bootstrap, "grants": [{"tenant": "tnt_nobody"}]},
        }
    }


@pytest.fixture
async def kafka_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep, kafka_bootstrap: str
) -> Any:
    monkeypatch.chdir(tmp_path)
    settings = settings_for(
        tmp_path, kafka=kafka_settings(kafka_bootstrap, message_timeout_ms=1500)
    )
    async with running(settings, canary) as harness:
        yield harness


async def kafka_endpoint(h: Harness, key: str, topic: str, **config: Any) -> str:
    target = {"cluster": "main", "topic": topic, **config.pop("kafka", {})}
    ep = await h.post(key, "/api/v1/endpoints", {"kind": "kafka", "kafka": target, **config})
    assert ep["endpoint"]["kind"] == "kafka" and ep["endpoint"]["url"] is None
    assert ep["endpoint"]["kafka"]["topic"] == topic
    endpoint_id = str(ep["endpoint"]["id"])
    await h.post(key, "/api/v1/subscriptions", {"endpoint_id": endpoint_id, "event_types": ["*"]})
    return endpoint_id


async def publish(h: Harness, key: str, events: list[Json]) -> list[str]:
    r = await h.client.post("/api/v1/events/batch", json={"events": events}, headers=h.auth(key))
    assert r.status_code == 202, r.text
    return [e["id"] for e in r.json()["data"]]


async def deliveries(h: Harness, key: str, endpoint_id: str) -> list[Json]:
    r = await h.get(key, "/api/v1/deliveries", endpoint_id=endpoint_id, limit=200)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def all_succeeded(h: Harness, key: str, endpoint_id: str, count: int) -> bool:
    found = await deliveries(h, key, endpoint_id)
    return len(found) == count and all(d["status"] == "succeeded" for d in found)


async def test_each_delivery_is_one_record_with_the_webhook_envelope(
    kafka_harness: Harness, kafka_bootstrap: str
) -> None:
    h = kafka_harness
    key = await h.tenant()
    topic = new_topic(kafka_bootstrap, "it-")
    endpoint_id = await kafka_endpoint(h, key, topic, ordering="ordered")
    events = [{"type": "order.placed", "data": {"n": i}, "key": f"b-{i % 2}"} for i in range(4)]
    events.append({"type": "order.noted", "data": {"n": 4}})  # no key: a record without one
    ids = await publish(h, key, events)
    await eventually(lambda: all_succeeded(h, key, endpoint_id, 5), timeout=30)

    records = read_topic(kafka_bootstrap, topic, expect=5, timeout=20)
    assert sorted(r.headers["webhook-id"].decode() for r in records) == sorted(ids)
    by_id = {r.headers["webhook-id"].decode(): r for r in records}
    for event_id, sent in zip(ids, events, strict=True):
        record = by_id[event_id]
        body = json.loads(record.value)
        assert body["type"] == sent["type"] and body["data"] == sent["data"]
        assert body["timestamp"].endswith("Z")
        assert record.key == (sent["key"].encode() if "key" in sent else None)
        assert record.headers["interlink-event-type"] == sent["type"].encode()
        assert record.headers["interlink-tenant"].startswith(b"tnt_")
    # One key, one partition, in publishing order.
    b0 = [json.loads(r.value)["data"]["n"] for r in sorted(records, key=lambda r: r.offset)
          if r.key == b"b-0"]  # fmt: skip
    assert b0 == [0, 2]

    r = await h.get(key, f"/api/v1/deliveries/{(await deliveries(h, key, endpoint_id))[0]['id']}")
    assert r.status_code == 200 and r.json()["attempt_count"] == 1
    metrics = (await h.client.get("/metrics")).text
    assert 'interlink_kafka_produce_seconds_count{cluster="main"} 5.0' in metrics
    assert 'status_class="acked"' in metrics


async def test_a_key_template_makes_the_record_key(
    kafka_harness: Harness, kafka_bootstrap: str
) -> None:
    h = kafka_harness
    key = await h.tenant()
    topic = new_topic(kafka_bootstrap, "it-", partitions=1)
    endpoint_id = await kafka_endpoint(h, key, topic, kafka={"key": "{type}/{key}"})
    await publish(h, key, [{"type": "order.paid", "data": {}, "key": "p-7"}])
    await eventually(lambda: all_succeeded(h, key, endpoint_id, 1), timeout=30)
    (record,) = read_topic(kafka_bootstrap, topic, expect=1, timeout=20)
    assert record.key == b"order.paid/p-7"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"kafka": {"cluster": "locked", "topic": "it-x"}}, "kafka.cluster", "no cluster 'locked'"),
        ({"kafka": {"cluster": "nowhere", "topic": "it-x"}}, "kafka.cluster", "is granted"),
        ({"kafka": {"cluster": "main", "topic": "secret-x"}}, "kafka.topic", "outside"),
        ({"kafka": {"cluster": "main", "topic": "it-x", "key": "{data}"}}, "kafka.key", "{key}"),
        ({"kafka": {"cluster": "main", "topic": "it-x"}, "url": "http://127.0.0.1:9/h"}, "url", ""),
        ({}, "kafka", "needs one"),
    ],
)
async def test_a_target_outside_the_grants_is_a_422_naming_the_field(
    kafka_harness: Harness, body: Json, field: str, says: str
) -> None:
    h = kafka_harness
    key = await h.tenant()
    r = await h.client.post(
        "/api/v1/endpoints", json={"kind": "kafka", **body}, headers=h.auth(key)
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    assert detail.startswith(f"{field}:") and says in detail, detail


async def test_a_push_endpoint_takes_no_kafka_target_and_no_broker_address_is_accepted(
    kafka_harness: Harness,
) -> None:
    h = kafka_harness
    key = await h.tenant()
    r = await h.client.post(
        "/api/v1/endpoints",
        json={"url": "http://127.0.0.1:9/h", "kafka": {"cluster": "main", "topic": "it-x"}},
        headers=h.auth(key),
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("kafka:"), r.text
    # A broker address where a cluster name goes is not a name (the schema's pattern): 400.
    r = await h.client.post(
        "/api/v1/endpoints",
        json={"kind": "kafka", "kafka": {"cluster": "10.0.0.1:9092", "topic": "it-x"}},
        headers=h.auth(key),
    )
    assert r.status_code == 400, r.text


async def test_a_failed_produce_is_retried_on_the_endpoints_schedule(
    kafka_harness: Harness, kafka_bootstrap: str
) -> None:
    """A topic that does not exist yet (auto-creation is off): the producer gives up after
    message_timeout_ms (1.5 s here), the attempt fails and the delivery is scheduled again;
    once the topic exists the retry lands."""
    h = kafka_harness
    key = await h.tenant()
    topic = f"it-late-{id(h)}"
    endpoint_id = await kafka_endpoint(h, key, topic, retry_schedule=[2, 2, 2, 2, 2])
    await publish(h, key, [{"type": "order.placed", "data": {"n": 1}, "key": "k"}])

    async def failed_once() -> bool:
        (d,) = await deliveries(h, key, endpoint_id) or [None]
        return d is not None and d["attempt_count"] >= 1 and d["status"] == "scheduled"

    await eventually(failed_once, timeout=20)
    (d,) = await deliveries(h, key, endpoint_id)
    assert "kafka" in (d["last_error"] or ""), d
    new_topic_named(kafka_bootstrap, topic)
    await eventually(lambda: all_succeeded(h, key, endpoint_id, 1), timeout=30)
    (record,) = read_topic(kafka_bootstrap, topic, expect=1, timeout=20)
    assert json.loads(record.value)["data"] == {"n": 1}


async def test_the_destination_refuses_a_grant_withdrawn_since_and_acks_a_granted_one(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(kafka_bootstrap, "it-", partitions=1)
    settings = _settings(kafka_bootstrap)
    producers = ConfluentProducers(settings.clusters)
    seen: list[tuple[str, float, str | None]] = []
    destination = KafkaDestination(settings, producers, lambda *a: seen.append(a))
    try:
        granted = _claimed(KafkaTarget("main", topic))
        result = await destination.deliver(granted, b'{"type":"t"}', {"traceparent": "00-x"})
        assert result.outcome is AttemptOutcome.SUCCEEDED and result.status_code is None
        assert seen and seen[0][0] == "main" and seen[0][2] is None
        (record,) = read_topic(kafka_bootstrap, topic, expect=1, timeout=20)
        assert record.value == b'{"type":"t"}' and record.key == b"k-1"
        assert record.headers["traceparent"] == b"00-x"
        assert record.headers["webhook-id"] == b"evt_1"

        withdrawn = _claimed(KafkaTarget("locked", topic))
        result = await destination.deliver(withdrawn, b"{}", {})
        assert result.outcome is AttemptOutcome.FAILED
        assert "not granted any more" in (result.error or "")
    finally:
        await producers.close()


def _settings(bootstrap: str) -> KafkaSettings:
    import msgspec

    return msgspec.convert(kafka_settings(bootstrap), KafkaSettings)


def _claimed(target: KafkaTarget) -> Claimed:
    return Claimed(
        delivery_id="dlv_1",
        tenant_id="ten_1",
        event_id="evt_1",
        endpoint_id="ep_1",
        attempt_count=0,
        lease_until=0.0,
        event_type="t",
        event_data=b"{}",
        received_at=0.0,
        url="",
        secret="",
        timeout_seconds=5.0,
        retry_schedule=(1.0,),
        key="k-1",
        kind=EndpointKind.KAFKA,
        kafka=target,
    )


async def test_dead_letters_redrive_and_replay_through_the_same_jobs(
    kafka_harness: Harness, kafka_bootstrap: str
) -> None:
    """A record that cannot be produced (no topic) dies after the schedule; once the topic
    exists, a bulk redrive sends it, and a replay job sends the event once more: the same
    jobs as for webhooks, each record with the same webhook-id."""
    h = kafka_harness
    key = await h.tenant()
    topic = f"it-dead-{id(h)}"
    endpoint_id = await kafka_endpoint(h, key, topic, retry_schedule=[1])
    (event_id,) = await publish(h, key, [{"type": "order.placed", "data": {"n": 9}, "key": "k"}])

    async def dead() -> bool:
        found = await deliveries(h, key, endpoint_id)
        return len(found) == 1 and found[0]["status"] == "dead"

    await eventually(dead, timeout=30)
    new_topic_named(kafka_bootstrap, topic)
    # The producer may take a moment to see the new topic: the redriven delivery gets retries.
    r = await h.client.patch(
        f"/api/v1/endpoints/{endpoint_id}", json={"retry_schedule": [1] * 10}, headers=h.auth(key)
    )
    assert r.status_code == 200, r.text
    await job(h, key, "redrive", {"endpoint_id": endpoint_id})
    await eventually(lambda: all_succeeded(h, key, endpoint_id, 1), timeout=30)
    await job(h, key, "replay", {"endpoint_id": endpoint_id, "event_ids": [event_id]})
    # Read in a thread: the event loop keeps running the dispatcher meanwhile.
    records = await asyncio.to_thread(read_topic, kafka_bootstrap, topic, 2, 30)
    assert [r.headers["webhook-id"].decode() for r in records] == [event_id, event_id]


async def job(h: Harness, key: str, kind: str, body: Json) -> None:
    r = await h.client.post(f"/api/v1/jobs/{kind}", json=body, headers=h.auth(key))
    assert r.status_code == 202, r.text


def new_topic_named(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
