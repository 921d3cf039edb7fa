"""``interlink-consume module:app``: runs a :class:`Consumer` (or one plain handler function,
wrapped in a Consumer that hands it every type) until SIGTERM or SIGINT.

The target is imported from the current directory as well as ``sys.path``; options given here
override the Consumer's own settings; the URL and key are best left to the environment
(``INTERLINK_API_URL``, ``INTERLINK_API_KEY``: arguments show in ``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from typing import Any

from interlink_client.consumer.core import Consumer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlink-consume", description=__doc__)
    parser.add_argument("target", help="module:attribute, a Consumer or an async handler")
    env = os.environ.get
    parser.add_argument(
        "--endpoint", default=env("INTERLINK_ENDPOINT_ID"), help="env INTERLINK_ENDPOINT_ID"
    )
    parser.add_argument("--api-url", default=env("INTERLINK_API_URL"), help="env INTERLINK_API_URL")
    parser.add_argument(
        "--api-key", default=env("INTERLINK_API_KEY"), help="prefer env INTERLINK_API_KEY"
    )
    parser.add_argument("--types", default="*", help="a plain handler's type pattern")
    parser.add_argument("--concurrency", type=int, help="messages handled at once")
    parser.add_argument("--lease-seconds", type=float, help="a handler's time per message")
    parser.add_argument("--wait-seconds", type=float, help="a claim's long poll (≤ 30)")
    parser.add_argument("--retry-after", type=float, help="least delay after a handler failed")
    parser.add_argument("--shutdown-seconds", type=float, help="running handlers' time at a stop")
    return parser


def load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"interlink-consume: {target!r} is not module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def consumer_of(args: argparse.Namespace) -> Consumer:
    target = load(args.target)
    if isinstance(target, Consumer):
        app = target
    elif callable(target):
        app = Consumer()
        app.handler(args.types)(target)
    else:
        raise SystemExit(f"interlink-consume: {args.target} is neither a Consumer nor callable")
    for option, attribute in (
        ("api_url", "base_url"),
        ("api_key", "api_key"),
        ("endpoint", "endpoint_id"),
        ("concurrency", "concurrency"),
        ("lease_seconds", "lease_seconds"),
        ("wait_seconds", "wait_seconds"),
        ("retry_after", "retry_after_seconds"),
        ("shutdown_seconds", "shutdown_seconds"),
    ):
        value = getattr(args, option)
        if value is not None:
            setattr(app, attribute, value)
    return app


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # httpx logs every request at INFO: a line per ack would cost more than the ack
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = consumer_of(_parser().parse_args(argv))
    try:
        asyncio.run(app.run())
    except ValueError as exc:  # a setting missing
        raise SystemExit(f"interlink-consume: {exc}") from None


if __name__ == "__main__":
    main()
