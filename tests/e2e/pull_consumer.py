"""The consumer of the pull e2e test, run by the SDK's entry point as a service would be:

    INTERLINK_API_URL=… INTERLINK_API_KEY=… INTERLINK_ENDPOINT_ID=… \
    CONSUMER_OUT=handled.jsonl CONSUMER_SEED=1 \
    python -m interlink_client.consumer.cli pull_consumer:app   (from this directory)

Its handler fails 10 % of the deliveries at random (raises: the Consumer nacks) and records
every handling as a JSON line before it returns (the Consumer then acks), so a SIGKILL between
the two shows as a second handling of the same delivery. An ack refused because the lease was
lost is recorded too (the test allows it only of a process it killed).
"""

from __future__ import annotations

import json
import os
import random
import time

from interlink_client import Consumer, Hooks, Message

FAIL_RATE = 0.10

_rng = random.Random(int(os.environ.get("CONSUMER_SEED", "0")))
_out = open(os.environ.get("CONSUMER_OUT", os.devnull), "a", buffering=1)  # noqa: SIM115


class Failed(Exception):
    pass


class Record(Hooks):
    def lease_lost(self, message: Message) -> None:
        _out.write(json.dumps({"lost": message.delivery_id, "pid": os.getpid()}) + "\n")


app = Consumer(lease_seconds=4, wait_seconds=5, hooks=Record())


@app.handler("booking.*")
async def handle(m: Message) -> None:
    if _rng.random() < FAIL_RATE:
        raise Failed("handler failed")
    record = {
        "delivery": m.delivery_id,
        "event": m.event_id,
        "key": m.key,
        "n": m.data["n"],
        "attempt": m.attempt,
        "pid": os.getpid(),
        "at": time.monotonic_ns(),  # one clock for every process of the machine
    }
    _out.write(json.dumps(record) + "\n")
