"""Deliveries/s to a Kafka endpoint against an HTTP endpoint, in the same run:
``python -m bench.kafka [--events N] [--json FILE]`` (``make bench-kafka``).

One in-process Interlink on SQLite (the set-up of tests/integration/test_delivery_lanes.py),
the broker of ``bash scripts/kafka.sh install start`` (``INTERLINK_TEST_KAFKA_BOOTSTRAP``,
default 127.0.0.1:19092) and a loopback receiver that answers 200 at once. Each phase appends
``--events`` events straight to the log for one endpoint only, and times them from the append
to the last settled success (the dispatcher's own count, the same for both kinds). Two lane
set-ups: unordered, and ordered over 500 keys; both kinds with the same concurrency (256).
Phases alternate HTTP, Kafka, HTTP, Kafka; best of two each, since one run on a shared machine
is mostly noise. The Kafka endpoint's topic has 8 partitions; acks=all, idempotent, linger 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from tests.integration.test_delivery_lanes import World, world

from interlink.domain.kafka import KafkaTarget
from interlink.domain.models import EndpointKind
from interlink.domain.ordering import Ordering
from interlink.storage.tenancy import system_scope

KEYS = 500
CONCURRENCY = 256


def delivered(w: World, endpoint_id: str) -> int:
    labels = {"endpoint_id": endpoint_id, "result": "succeeded"}
    value = w.system.metrics.registry.get_sample_value("interlink_deliveries_total", labels)
    return int(value or 0)


def new_topic(bootstrap: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 8, 1)]).values():
        future.result(timeout=30)
    return name


async def phase(w: World, bootstrap: str, kind: str, ordering: Ordering, events: int) -> float:
    """Deliveries/s of ``events`` events to one new endpoint of ``kind``."""
    label = f"{kind}{uuid.uuid4().hex[:6]}"
    options: dict[str, Any] = {"ordering": ordering, "concurrency": CONCURRENCY}
    if kind == "kafka":
        target = KafkaTarget("bench", new_topic(bootstrap))
        options.update(kind=EndpointKind.KAFKA, kafka=target)
        endpoint_id = await w.endpoint("", [f"{label}.*"], **options)
    else:
        receiver = await w.receiver(lambda _: (200, 0))
        endpoint_id = await w.endpoint(receiver.url, [f"{label}.*"], **options)
    items = [(f"{label}.updated", f"k-{i % KEYS}", {"n": i}) for i in range(events)]
    started = time.monotonic()
    for i in range(0, events, 2000):
        await w.inject(items[i : i + 2000])
    deadline = started + 600
    while delivered(w, endpoint_id) < events:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: {delivered(w, endpoint_id)} of {events} in 600 s")
        await asyncio.sleep(0.02)
    return events / (time.monotonic() - started)


async def measure(tmp: Path, bootstrap: str, events: int) -> dict[str, Any]:
    kafka = {"clusters": {"bench": {"bootstrap_servers": bootstrap, "grants": [{"tenant": "*"}]}}}
    results: dict[str, Any] = {}
    async with world(tmp, kafka=kafka, delivery_concurrency=CONCURRENCY) as w:
        with system_scope("bench: the operator"):
            for ordering in (Ordering.UNORDERED, Ordering.ORDERED):
                rates: dict[str, list[float]] = {"http": [], "kafka": []}
                for kind in ("http", "kafka", "http", "kafka"):
                    rates[kind].append(await phase(w, bootstrap, kind, ordering, events))
                http, kafka_rate = max(rates["http"]), max(rates["kafka"])
                results[ordering.value] = {
                    "http_per_s": round(http, 1),
                    "kafka_per_s": round(kafka_rate, 1),
                    "kafka_over_http": round(kafka_rate / http, 2),
                    "runs": rates,
                }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events a phase (10,000)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("INTERLINK_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except KafkaException as exc:
        print(f"no Kafka at {bootstrap} ({exc}): bash scripts/kafka.sh install start")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(Path(tmp), bootstrap, args.events))
    for ordering, r in results.items():
        print(
            f"{ordering:>9}: HTTP {r['http_per_s']:>8.1f}/s   Kafka {r['kafka_per_s']:>8.1f}/s"
            f"   Kafka/HTTP {r['kafka_over_http']:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"events": args.events, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
