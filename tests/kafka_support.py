"""A real Kafka broker for the tests (scripts/kafka.sh): its address, topics, reading them back,
and killing and restarting it.

``INTERLINK_TEST_KAFKA_BOOTSTRAP`` names the broker (``.ci/run`` exports it after
``bash scripts/kafka.sh install start``: ``127.0.0.1:19092``). Unset or not answering, the Kafka
tests are skipped — but with ``CI=true`` they fail, as for PostgreSQL (tests/conftest.py).
No mock broker anywhere: what the tests read is what the broker stored.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tests.conftest import service_unavailable

KAFKA_BOOTSTRAP_ENV = "INTERLINK_TEST_KAFKA_BOOTSTRAP"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "kafka.sh"


def kafka_bootstrap() -> str:
    """The test broker's address, or a skip (a failure under CI) saying why there is none."""
    address = os.environ.get(KAFKA_BOOTSTRAP_ENV, "").strip()

    def unavailable(why: str) -> None:
        service_unavailable(
            f"Kafka not available: {why}. Start one with "
            f"`bash scripts/kafka.sh install start` and set {KAFKA_BOOTSTRAP_ENV}=127.0.0.1:19092."
        )

    if not address:
        unavailable(f"{KAFKA_BOOTSTRAP_ENV} is not set")
    try:
        AdminClient({"bootstrap.servers": address}).list_topics(timeout=10)
    except KafkaException as exc:
        unavailable(f"no broker answers at {address} ({exc})")
    return address


def new_topic(bootstrap: str, prefix: str, partitions: int = 4) -> str:
    """A fresh topic (a unique name), created and visible to producers when this returns."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while name not in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"topic {name} not visible"
        time.sleep(0.1)
    return name


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list[Record]:
    """Every record of ``topic`` from the start of each partition, once ``expect`` have been
    read or ``timeout`` passed (then what there is); read_committed: only what the broker has."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    continue
                headers = {k: v or b"" for k, v in m.headers() or []}
                records.append(Record(m.partition(), m.offset(), m.key(), m.value(), headers))
        return records
    finally:
        consumer.close()


def by_partition(records: Iterable[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.partition, []).append(r)
    return out


def broker(command: str) -> None:
    """``scripts/kafka.sh <command>`` on the test broker (kill: SIGKILL; start: until ready)."""
    subprocess.run(["bash", str(SCRIPT), command], check=True, timeout=120)
