"""A webhook receiver for the demo: a real HTTP server that checks every signature.

It verifies each request with Interlink's own Standard Webhooks verifier and the endpoint's
secret, tracks ``webhook-id`` values (so a message processed twice is noticed) and answers the
way its :class:`Behaviour` says: ``healthy`` always 200, ``flaky`` sometimes 500 or 429 with
``Retry-After``, ``down`` always 503.
"""

from __future__ import annotations

import enum
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from interlink.ingress.verifiers import VerificationError, standard_webhooks

__all__ = ["Behaviour", "DemoReceiver", "ReceiverStats"]


class Behaviour(enum.StrEnum):
    HEALTHY = "healthy"
    FLAKY = "flaky"
    DOWN = "down"


@dataclass
class ReceiverStats:
    received: int = 0  # every request
    bad_signatures: int = 0
    duplicates: int = 0  # a webhook-id already answered with 2xx, delivered again
    by_status: Counter[int] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)  # webhook-ids of validly signed requests
    acknowledged: set[str] = field(default_factory=set)  # ... answered with 2xx

    @property
    def unique(self) -> int:
        return len(self.seen)


class DemoReceiver:
    """An aiohttp server on ``host`` (port 0 picks a free one; :attr:`port` is the bound one)."""

    def __init__(
        self,
        name: str,
        secret: str,
        behaviour: Behaviour = Behaviour.HEALTHY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tolerance_seconds: int = 300,
        flaky_error_ratio: float = 0.30,
        flaky_throttle_ratio: float = 0.05,
        retry_after_seconds: int = 2,
        seed: int | None = None,
    ) -> None:
        standard_webhooks.validate_secret(secret)
        self.name = name
        self.behaviour = behaviour  # may be changed while running
        self.host = host
        self.stats = ReceiverStats()
        self.secret = secret
        self._requested_port = port
        self._port: int | None = None
        self._tolerance = tolerance_seconds
        self._error_ratio = flaky_error_ratio
        self._throttle_ratio = flaky_throttle_ratio
        self._retry_after = retry_after_seconds
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"receiver {self.name!r} is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhooks"

    async def __aenter__(self) -> DemoReceiver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/webhooks", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.stats.received += 1
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            standard_webhooks.verify(body, headers, [self.secret], {}, self._tolerance, time.time())
        except VerificationError as exc:
            self.stats.bad_signatures += 1
            return self._answer(401, f"invalid signature: {exc}")
        webhook_id = headers.get(standard_webhooks.ID_HEADER) or headers["svix-id"]
        self.stats.seen.add(webhook_id)

        if self.behaviour is Behaviour.DOWN:
            return self._answer(503, "service unavailable")
        if self.behaviour is Behaviour.FLAKY:
            r = self._rng.random()
            if r < self._error_ratio:
                return self._answer(500, "internal error")
            if r < self._error_ratio + self._throttle_ratio:
                return self._answer(429, "slow down", {"Retry-After": str(self._retry_after)})
        if webhook_id in self.stats.acknowledged:
            # Processed before: a real receiver would skip the work and still answer 2xx.
            self.stats.duplicates += 1
        self.stats.acknowledged.add(webhook_id)
        return self._answer(200, "ok")

    def _answer(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.stats.by_status[status] += 1
        return web.json_response({"message": message}, status=status, headers=headers)
