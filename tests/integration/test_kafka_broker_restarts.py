"""Issue 14's acceptance for Kafka destinations: events over 500 keys to an ordered Kafka
endpoint while the broker is SIGKILLed and restarted twice; then every event is in the topic,
each key's records are in one partition in publishing order, and duplicates are counted.

The size is ``INTERLINK_KAFKA_ACCEPTANCE_EVENTS``: by default the issue's full 20,000 (about
40 s on SQLite on two shared cores, broker restarts included); a smaller number for a quick
run. Duplicates are expected to be 0: the producer is idempotent, so its own retries through a
restart never write a record twice, and an attempt is settled only on the broker's
acknowledgement. A duplicate could only come from a delivery attempted twice, i.e. a record
acknowledged after its attempt had already failed (message.timeout.ms passing while the broker
is down for longer than it): the test prints the count either way, and fails naming them.

Marked exclusive: it kills the broker every other Kafka test uses (make test runs it alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.canary import Sweep
from tests.integration.conftest import Harness, running, settings_for
from tests.integration.test_kafka_endpoints import kafka_endpoint, kafka_settings, publish
from tests.kafka_support import broker, by_partition, new_topic, read_topic

pytestmark = pytest.mark.exclusive

EVENTS = int(os.environ.get("INTERLINK_KAFKA_ACCEPTANCE_EVENTS", "20000"))
KEYS = 500
BATCH = 1000  # the publish API's most events a request


def succeeded(h: Harness, endpoint_id: str) -> int:
    labels = {"endpoint_id": endpoint_id, "result": "succeeded"}
    value = h.system.metrics.registry.get_sample_value("interlink_deliveries_total", labels)
    return int(value or 0)


async def wait_for(h: Harness, endpoint_id: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while succeeded(h, endpoint_id) < count:
        assert time.monotonic() < deadline, f"{succeeded(h, endpoint_id)} of {count} delivered"
        await asyncio.sleep(0.1)


async def kill_and_restart() -> float:
    """SIGKILL, then start again (until ready); how long the broker was gone."""
    started = time.monotonic()
    await asyncio.to_thread(broker, "kill")
    await asyncio.to_thread(broker, "start")
    return time.monotonic() - started


async def test_every_event_in_order_across_two_broker_kills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep, kafka_bootstrap: str
) -> None:
    monkeypatch.chdir(tmp_path)
    topic = new_topic(kafka_bootstrap, "it-acceptance-", partitions=8)
    # A restart takes 5-25 s on two loaded cores: the producer keeps each record through it
    # (60 s, inside the 120 s delivery lease) rather than fail attempts the broker may yet ack.
    kafka = kafka_settings(kafka_bootstrap, message_timeout_ms=60_000)
    settings = settings_for(tmp_path, kafka=kafka)
    async with running(settings, canary) as h:
        key = await h.tenant()
        endpoint_id = await kafka_endpoint(
            h, key, topic, ordering="ordered", concurrency=KEYS, retry_schedule=[1, 2, 5, 10, 30]
        )
        sent = [
            {"type": "order.placed", "key": f"k-{i % KEYS}", "data": {"seq": i // KEYS}}
            for i in range(EVENTS)
        ]
        began = time.monotonic()
        for start in range(0, EVENTS, BATCH):
            await publish(h, key, sent[start : start + BATCH])
        outages = []
        for share in (3, 3 * 2):
            await wait_for(h, endpoint_id, EVENTS * share // 9, timeout=600)
            outages.append(await kill_and_restart())
        await wait_for(h, endpoint_id, EVENTS, timeout=900)
        elapsed = time.monotonic() - began
        dead = h.system.metrics.registry.get_sample_value(
            "interlink_deliveries_total", {"endpoint_id": endpoint_id, "result": "dead"}
        )
        assert not dead, f"{dead} deliveries dead"

    records = read_topic(kafka_bootstrap, topic, expect=EVENTS, timeout=120)
    ids = Counter(r.headers["webhook-id"] for r in records)
    duplicates = len(records) - len(ids)
    print(
        f"\nkafka acceptance: {EVENTS} events over {KEYS} keys in {elapsed:.1f} s "
        f"({EVENTS / elapsed:.0f}/s), broker down {outages[0]:.1f} s and {outages[1]:.1f} s; "
        f"{len(records)} records, {len(ids)} distinct, {duplicates} duplicates"
    )
    assert len(ids) == EVENTS, f"{EVENTS - len(ids)} events missing from the topic"

    partition_of: dict[bytes | None, set[int]] = {}
    for partition, rows in by_partition(records).items():
        seen: dict[bytes | None, list[int]] = {}
        for r in rows:
            partition_of.setdefault(r.key, set()).add(partition)
            seen.setdefault(r.key, []).append(json.loads(r.value)["data"]["seq"])
        for k, seqs in seen.items():
            # Duplicates (if any) repeat an earlier record; the first copies must be in order.
            firsts = list(dict.fromkeys(seqs))
            assert firsts == sorted(firsts), f"key {k!r} out of order in partition {partition}"
    assert all(len(p) == 1 for p in partition_of.values()), "a key spread over partitions"
    assert len(partition_of) == KEYS
    if duplicates:
        twice = [i for i, n in ids.items() if n > 1][:5]
        pytest.fail(f"{duplicates} duplicate records (e.g. webhook-ids {twice}): see the module")
