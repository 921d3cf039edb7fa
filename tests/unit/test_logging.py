"""Log lines: the ids bound by the code handling an event, and redaction by allow-list."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from interlink.observability.logging import REDACTED, bind_ids, configure, redact, scrub

SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "ik_3Jt0qL1hRk2c9yT8wE7vU6bN5mA4sD3fG2hJ1kL0zXc"
ADMIN_KEY = "ik_admin_abcDEF123_-ghiJKL456mnoPQR789stuVWX0yz"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    stream.isatty = lambda: False  # type: ignore[method-assign]
    configure("json", "debug", stream)
    yield stream
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def logged(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_bound_ids_are_on_every_line_until_the_block_ends(lines: io.StringIO) -> None:
    log = structlog.get_logger("t")
    with bind_ids(tenant_id="tnt_1", source_id="src_1", event_id="evt_1"):
        log.info("ingest.accepted")
        with bind_ids(endpoint_id="ep_1", delivery_id="dlv_1"):
            log.info("delivery.attempted", status_code=200)
        log.info("after")
    log.info("outside")
    first, second, third, outside = logged(lines)
    assert first | {"tenant_id": "tnt_1", "source_id": "src_1", "event_id": "evt_1"} == first
    assert second["endpoint_id"] == "ep_1" and second["delivery_id"] == "dlv_1"
    assert second["tenant_id"] == "tnt_1" and second["status_code"] == 200
    assert "endpoint_id" not in third and third["event_id"] == "evt_1"
    assert not {"tenant_id", "source_id", "event_id"} & outside.keys()


async def test_ids_do_not_leak_between_concurrent_tasks(lines: io.StringIO) -> None:
    log = structlog.get_logger("t")

    async def handle(n: int) -> None:
        with bind_ids(event_id=f"evt_{n}"):
            await asyncio.sleep(0.01 * (3 - n))
            log.info("handled", count=n)

    await asyncio.gather(*(handle(n) for n in range(3)))
    assert {(e["count"], e["event_id"]) for e in logged(lines)} == {
        (0, "evt_0"),
        (1, "evt_1"),
        (2, "evt_2"),
    }


def test_bind_ids_takes_only_the_known_ids() -> None:
    with pytest.raises(TypeError, match="bind_ids takes only"), bind_ids(secret="x"):  # type: ignore[arg-type]
        pass


def test_keys_that_name_a_credential_are_redacted(lines: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.info(
        "configured",
        secret="plain",
        client_secret="plain",
        api_key="plain",
        apiKey="plain",
        Authorization="Basic Zm9vOmJhcg==",
        password="hunter2",
        access_token="plain",
        signature="v1,abc",
        session_cookie="plain",
        private_key="plain",
        hmac_key="plain",
    )
    (line,) = logged(lines)
    for key in (
        "secret",
        "client_secret",
        "api_key",
        "apiKey",
        "Authorization",
        "password",
        "access_token",
        "signature",
        "session_cookie",
        "private_key",
        "hmac_key",
    ):
        assert line[key] == REDACTED, key


def test_safe_keys_print_as_they_are(lines: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.info(
        "ingest.rejected",
        source_id="src_1",
        reason="signature",
        detail="no signature matched",
        idempotency_key="msg_123",
        status_code=401,
        type="booking.created",
    )
    (line,) = logged(lines)
    assert line["source_id"] == "src_1" and line["reason"] == "signature"
    assert line["detail"] == "no signature matched"
    assert line["idempotency_key"] == "msg_123"  # ends in "key", but allowed by name
    assert line["status_code"] == 401 and line["type"] == "booking.created"
    assert line["event"] == "ingest.rejected" and line["level"] == "info"


def test_our_secrets_are_redacted_inside_any_string_value(lines: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.warning(
        f"verification failed with {SIGNING}",
        detail=f"tried secret {SIGNING} and {API_KEY}",
        error=f"401 for Bearer {ADMIN_KEY}",
        note=f"header was 'authorization: bearer {API_KEY}'",
        headers={"x-custom": f"key={API_KEY}", "x-api-token": "anything"},
        urls=[f"https://example.com/?k={SIGNING}"],
    )
    (line,) = logged(lines)
    text = json.dumps(line)
    for secret in (SIGNING, API_KEY, ADMIN_KEY, SIGNING[6:], API_KEY[3:]):
        assert secret not in text
    assert line["event"] == f"verification failed with {REDACTED}"
    assert line["detail"] == f"tried secret {REDACTED} and {REDACTED}"
    assert line["headers"] == {"x-custom": f"key={REDACTED}", "x-api-token": REDACTED}
    assert line["urls"] == [f"https://example.com/?k={REDACTED}"]


def test_secrets_in_a_traceback_are_redacted(lines: io.StringIO) -> None:
    log = structlog.get_logger("t")
    try:
        raise ValueError(f"bad secret {SIGNING}")
    except ValueError:
        log.exception("failed")
    (line,) = logged(lines)
    assert "ValueError" in line["exception"]
    assert SIGNING not in line["exception"] and REDACTED in line["exception"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no secrets here", "no secrets here"),
        ("evt_0192abc and src_0192abc stay", "evt_0192abc and src_0192abc stay"),
        ("ik_ alone is no key", "ik_ alone is no key"),
        (f"x_{API_KEY}", f"x_{REDACTED}"),  # glued to a word, still redacted
        (f"({API_KEY})", f"({REDACTED})"),
        (f"x={SIGNING}&y=1", f"x={REDACTED}&y=1"),
        ("key whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A= here", f"key {REDACTED} here"),
        ("whsec_stripe_style_4f1a", REDACTED),
        (
            "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= is public",
            "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= is public",
        ),
        ("BEARER abc.def-ghi", REDACTED),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_redact_processor_leaves_other_values_alone() -> None:
    event: dict[str, Any] = {"event": "x", "count": 3, "ratio": 0.5, "flag": True, "none": None}
    assert redact(None, "info", dict(event)) == event
