"""``interlink-consume``'s target and options (no I/O): a Consumer is run as it is, options
overriding its settings; a plain handler is wrapped in a Consumer that hands it every type."""

from __future__ import annotations

import sys
import types

import pytest

from interlink_client import Consumer, Message
from interlink_client.consumer.cli import _parser, consumer_of


@pytest.fixture
def module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = types.ModuleType("fake_service")
    monkeypatch.setitem(sys.modules, "fake_service", fake)
    return fake


def test_a_consumer_runs_with_the_options_given(module: types.ModuleType) -> None:
    module.app = Consumer("http://a", "key", "ep_1", concurrency=3)  # type: ignore[attr-defined]
    app = consumer_of(_parser().parse_args(["fake_service:app", "--concurrency", "7"]))
    assert app is module.app  # type: ignore[attr-defined]
    assert (app.concurrency, app.endpoint_id, app.lease_seconds) == (7, "ep_1", 30.0)


def test_a_plain_handler_is_wrapped(module: types.ModuleType) -> None:
    async def handle(message: Message) -> None: ...

    module.handle = handle  # type: ignore[attr-defined]
    argv = ["fake_service:handle", "--endpoint", "ep_2", "--types", "booking.*"]
    app = consumer_of(_parser().parse_args(argv))
    assert app.endpoint_id == "ep_2"
    assert app._match("booking.confirmed") is handle and app._match("invoice.paid") is None


def test_a_target_that_is_neither_is_refused(module: types.ModuleType) -> None:
    module.value = 3  # type: ignore[attr-defined]
    with pytest.raises(SystemExit, match="neither a Consumer nor callable"):
        consumer_of(_parser().parse_args(["fake_service:value"]))
    with pytest.raises(SystemExit, match="not module:attribute"):
        consumer_of(_parser().parse_args(["fake_service"]))
