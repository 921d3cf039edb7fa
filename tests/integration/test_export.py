"""Export (`GET /api/v1/export`, `interlink export`): a tenant's events received in a window,
each with its deliveries and attempts, one NDJSON line each; every event of the window once and
nothing else (no other window's, no other tenant's); resumable after the last line written;
bad parameters get a clear 4xx."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.integration.conftest import Harness, eventually, invoke, signed
from tests.integration.test_ingest import make_source


async def _send(h: Harness, source: str, secret: str, names: range) -> list[str]:
    ids = []
    for n in names:
        body, headers = signed(secret, f"msg_{n}", {"type": "booking.created", "data": {"n": n}})
        r = await h.client.post(f"/in/{source}", content=body, headers=headers)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


async def _window(h: Harness, receiver: Any) -> tuple[str, list[str], float, float]:
    """A tenant whose events 10-29 fall in [t1, t2); events 0-9 before, 30-39 after."""
    key = await h.tenant()
    source, secret = await make_source(h, key)
    ep = await h.post(key, "/api/v1/endpoints", {"url": receiver.url})
    receiver.secret = ep["secret"]
    subscription = {"endpoint_id": ep["endpoint"]["id"], "event_types": ["*"]}
    await h.post(key, "/api/v1/subscriptions", subscription)
    await _send(h, source, secret, range(10))
    await asyncio.sleep(0.01)
    t1 = time.time()
    inside = await _send(h, source, secret, range(10, 30))
    t2 = time.time()
    await asyncio.sleep(0.01)
    await _send(h, source, secret, range(30, 40))
    await eventually(lambda: len(receiver.received) == 40)
    return key, inside, t1, t2


async def test_an_export_holds_the_window_with_deliveries_and_resumes(
    harness: Harness, receiver_factory: Any
) -> None:
    key, inside, t1, t2 = await _window(harness, await receiver_factory())
    other = await harness.tenant("other")  # its events never show in acme's export
    other_source, other_secret = await make_source(harness, other)
    await _send(harness, other_source, other_secret, range(100, 105))

    r = await harness.get(key, "/api/v1/export", since=str(t1), until=str(t2))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = _lines(r.text)
    assert [line["event"]["id"] for line in lines] == inside
    first = lines[0]
    assert first["event"]["data"] == {"n": 10} and first["event"]["type"] == "booking.created"
    (delivery,) = first["deliveries"]
    assert delivery["delivery"]["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [200]

    resumed = await harness.get(
        key, "/api/v1/export", since=str(t1), until=str(t2), resume_after=inside[9]
    )
    assert [line["event"]["id"] for line in _lines(resumed.text)] == inside[10:]


async def test_bad_export_parameters_are_refused_clearly(harness: Harness) -> None:
    key = await harness.tenant()
    cases = [
        ({}, 400, "since"),
        ({"since": "yesterday"}, 400, "ISO 8601"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "must be after"),
        ({"since": ""}, 400, "since"),
        ({"since": "0", "resume_after": "evt_nope"}, 400, "resume_after"),
        ({"since": "0", "limit": "5"}, 400, "unknown query parameter"),
    ]
    for query, status, words in cases:
        r = await harness.get(key, "/api/v1/export", **query)
        assert r.status_code == status, (query, r.text)
        assert words in r.json()["detail"], (query, r.json())


async def test_the_cli_exports_to_a_file_and_resumes_a_cut_one(
    served: Harness,
    receiver_factory: Any,
    tmp_path: Any,
) -> None:
    key, inside, t1, t2 = await _window(served, await receiver_factory())
    out = tmp_path / "export.ndjson"
    window = ["--since", str(t1), "--until", str(t2), "--output", str(out)]
    done = await invoke(served, key, "export", *window)
    assert done.exit_code == 0, done.output
    assert "exported 20 events" in done.output
    whole = out.read_bytes()
    assert [line["event"]["id"] for line in _lines(whole.decode())] == inside

    again = await invoke(served, key, "export", *window)
    assert again.exit_code == 2 and "--resume" in again.output
    out.write_bytes(whole[: len(whole) // 2])  # cut mid-line, as a dropped run leaves it
    resumed = await invoke(served, key, "export", *window, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == whole
