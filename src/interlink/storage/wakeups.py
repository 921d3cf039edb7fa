"""Wake-ups across processes on PostgreSQL: LISTEN on a dedicated connection, call back.

Only ever a hint: every role also polls slowly, so a lost notification, a dropped connection or
a restarting server delays work by at most the poll interval and loses nothing. The listening
connection reconnects by itself with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger("interlink.wakeups")

RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://…`` (or plain) as the DSN asyncpg takes."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith(("postgresql", "postgres")) else url


class Wakeups:
    def __init__(self, url: str, channels: Mapping[str, Callable[[], None]]) -> None:
        self._dsn = asyncpg_dsn(url)
        self._channels = dict(channels)
        self.connected = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(self._listener(lost.set))
                for channel, wake in self._channels.items():
                    await conn.add_listener(channel, self._listener(wake))
                self.connected.set()
                failures = 0
                # Wake everything once: what was notified while we were away is not lost,
                # only late.
                for wake in self._channels.values():
                    wake()
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wakeups.disconnected", error=repr(exc))
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1

    @staticmethod
    def _listener(wake: Callable[[], None]) -> Callable[..., None]:
        def on_notify(*_: object) -> None:
            wake()

        return on_notify
