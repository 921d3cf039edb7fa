"""What encryption at rest costs the hot path: ``python -m bench.secrets_at_rest [--n N]``.

Both sides in the same run, in one process, on one SQLite database (docs/benchmarks.md):

* **ingest**: the ingest route's per-request work on secrets: its source cache's lookup, then
  verifying a Standard Webhooks signature, for a source stored sealed (as every source is now)
  and for one stored as plaintext (a row as release 0013 wrote it, which is still read).
* **signing**: signing a delivery as the dispatcher does, from the endpoint's stored value: the
  sealed ciphertext through ``Signer`` (decrypted once, then cached), against the plaintext
  secret signed directly, and against decrypting on every attempt (what the cache saves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from interlink.delivery.signing import Signer, signature_headers
from interlink.domain.models import Envelope
from interlink.ingress.app import SourceCache
from interlink.ingress.verifiers import generate_secret
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.management import Management
from interlink.storage.sealed_secrets import open_secrets, seal
from interlink.storage.secrets_box import SecretBox
from interlink.storage.tables import sources
from interlink.storage.tenancy import system_scope

BODY = b'{"type":"booking.created","data":{"booking_id":"b-1","guest":"x"}}'


def rate(n: int, step: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - started)


async def arate(n: int, step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await step()
    return n / (time.perf_counter() - started)


async def ingest(management: Management, n: int) -> dict[str, float]:
    tenant, _ = await management.create_tenant("bench")
    secret = generate_secret("standard_webhooks")
    common = {
        "verifier": "standard_webhooks",
        "verifier_config": {},
        "envelope": Envelope(),
        "max_body_bytes": 1 << 20,
        "tolerance_seconds": 300,
    }
    sealed = await management.create_source(tenant.id, name="sealed", secrets=[secret], **common)
    plain = await management.create_source(tenant.id, name="plain", secrets=[secret], **common)
    async with management.db.write() as conn:  # as release 0013 stored it
        where = sources.c.id == plain.id
        await conn.execute(sources.update().where(where).values(secrets=[secret]))
    ts = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": Webhook(secret).sign(
            "msg_1", datetime.fromtimestamp(ts, UTC), BODY.decode()
        ),
    }
    cache = SourceCache(management)
    out = {}
    for name, source_id in (("sealed", sealed.id), ("plaintext", plain.id)):

        async def step(source_id: str = source_id) -> None:
            found = await cache.lookup(source_id)
            assert found is not None
            found[1](BODY, headers, time.time())

        await arate(n // 10, step)  # warm
        out[name] = await arate(n, step)
    return out


def signing(box: SecretBox, n: int) -> dict[str, float]:
    secret = generate_secret("standard_webhooks")
    stored = seal(box, open_secrets(box, secret))
    signer = Signer(lambda s: open_secrets(box, s))
    ts = int(time.time())
    out = {
        "sealed, cached": rate(n, lambda: signer(stored, "msg_1", ts, BODY)),
        "plaintext": rate(n, lambda: signature_headers(secret, "msg_1", ts, BODY)),
        "sealed, decrypted per attempt": rate(
            n, lambda: signature_headers(open_secrets(box, stored)[0].value, "msg_1", ts, BODY)
        ),
    }
    assert signer.decryptions == 1
    return out


async def measure(n: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        box = SecretBox([SecretBox.new_key()])
        db = Database(url)
        try:
            with system_scope("bench"):
                return {
                    "ingest lookup + verify /s": await ingest(Management(db, box), n),
                    "delivery signing /s": signing(box, n),
                }
        finally:
            await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="operations per measurement")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results = asyncio.run(measure(args.n))
    for what, figures in results.items():
        base = figures["plaintext"]
        for name, value in figures.items():
            print(f"{what:28} {name:32} {value:>10,.0f}  {value / base:5.2f}x plaintext")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
