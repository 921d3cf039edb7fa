"""``interlink-outbox``: ``relay`` ships the outbox to Interlink; ``ddl`` prints the table's
DDL; ``create-table`` makes it in a database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from interlink_client.client import AsyncInterlink
from interlink_client.outbox.relay import Relay, engine_for
from interlink_client.outbox.table import create_table, ddl


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlink-outbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="ship committed outbox rows to Interlink")
    env = os.environ.get
    relay.add_argument(
        "--database",
        default=env("INTERLINK_OUTBOX_DATABASE"),
        help="the service's database URL (postgresql://… or sqlite:///…); "
        "env INTERLINK_OUTBOX_DATABASE",
    )
    relay.add_argument("--api-url", default=env("INTERLINK_API_URL"), help="env INTERLINK_API_URL")
    relay.add_argument(
        "--api-key",
        default=env("INTERLINK_API_KEY"),
        help="a tenant's API key; prefer env INTERLINK_API_KEY (arguments show in ps)",
    )
    relay.add_argument("--batch-size", type=int, default=500, help="rows per request (≤ 1000)")
    relay.add_argument(
        "--poll-seconds", type=float, default=0.5, help="how often to look without LISTEN"
    )
    relay.add_argument(
        "--idempotency-prefix",
        default="outbox-",
        help="idempotency key of a row without its own: PREFIX + row id; give each outbox "
        "publishing under one tenant its own prefix",
    )
    relay.add_argument("--once", action="store_true", help="ship what is there, then exit")
    show = commands.add_parser("ddl", help="print the outbox table's DDL")
    show.add_argument("dialect", choices=["postgresql", "sqlite"])
    create = commands.add_parser("create-table", help="create the outbox table if missing")
    create.add_argument("--database", required=True)
    return parser


async def _relay(args: argparse.Namespace) -> None:
    engine = engine_for(args.database)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with AsyncInterlink(args.api_url, args.api_key) as client:
            relay = Relay(
                engine,
                client,
                batch_size=args.batch_size,
                poll_seconds=args.poll_seconds,
                idempotency_prefix=args.idempotency_prefix,
            )
            if args.once:
                await relay.drain()
            else:
                await relay.run(stop)
    finally:
        await engine.dispose()


async def _create_table(database: str) -> None:
    engine = engine_for(database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(create_table)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "ddl":
        sys.stdout.write(ddl(args.dialect))
    elif args.command == "create-table":
        asyncio.run(_create_table(args.database))
    else:
        missing = [n for n in ("database", "api_url", "api_key") if not getattr(args, n)]
        if missing:
            _parser().error("relay needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
        asyncio.run(_relay(args))


if __name__ == "__main__":
    main()
