"""A pull consumer as a plain process (the SDK is not written yet): claims from one endpoint
with a long poll, handles each delivery in claim order, fails 10 % of them at random (a nack),
and records every handling as a JSON line before acking it, so a SIGKILL between the two shows
as a second handling of the same delivery.

    python pull_consumer.py BASE_URL API_KEY ENDPOINT_ID OUT_FILE SEED
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import httpx

FAIL_RATE = 0.10
LEASE_SECONDS = 4


def main() -> None:
    base_url, key, endpoint_id, out_path, seed = sys.argv[1:6]
    rng = random.Random(int(seed))
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    with open(out_path, "a", buffering=1) as out:
        while True:
            try:
                r = client.post(
                    f"/api/v1/endpoints/{endpoint_id}/claims",
                    json={"max": 20, "lease_seconds": LEASE_SECONDS, "wait_seconds": 5},
                )
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            r.raise_for_status()
            for c in r.json()["data"]:
                lease = {"lease_id": c["lease_id"]}
                path = f"/api/v1/deliveries/{c['delivery_id']}"
                if rng.random() < FAIL_RATE:
                    client.post(f"{path}/nack", json=lease | {"error": "handler failed"})
                    continue
                record = {
                    "delivery": c["delivery_id"],
                    "event": c["event_id"],
                    "key": c["key"],
                    "n": c["data"]["n"],
                    "attempt": c["attempt"],
                    "pid": os.getpid(),
                    "at": time.monotonic_ns(),  # one clock for every process of the machine
                }
                out.write(json.dumps(record) + "\n")
                answer = client.post(f"{path}/ack", json=lease)
                if answer.status_code == 409:  # our lease lapsed meanwhile: said, for the test
                    out.write(json.dumps({"lost": c["delivery_id"], "pid": os.getpid()}) + "\n")
                else:
                    answer.raise_for_status()


if __name__ == "__main__":
    main()
