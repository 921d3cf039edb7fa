"""``Consumer``: handlers run over a pull endpoint's deliveries.

The loop: claim as many deliveries as there are free handler slots (a long poll), run each
message's handler, ack it when the handler returns, nack it with the error when it raises.
What the server guarantees is kept, not re-derived: an ordered endpoint hands out only a key's
head, so one claim never holds two messages of a key; the consumer still chains a key's messages
(a lapsed lease could hand a key's head out again while its first handling runs here), which
costs nothing when keys differ.

A stop (``stop()``, SIGTERM, SIGINT) ends claiming, lets running handlers finish within
``shutdown_seconds``, then cancels them; every message this process holds and did not finish
is nacked with ``retry_after_seconds=0`` (released: claimable again at once, one attempt used),
so a rolling restart does not leave them to wait for their leases. A claim cut by the stop
leaves what it had claimed to its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from interlink_client.client import AsyncInterlink
from interlink_client.errors import ApiError, Conflict, InterlinkError, NotFound, TransportError
from interlink_client.models import Message

log = logging.getLogger("interlink_client.consumer")

Handler = Callable[[Message], Awaitable[None]] | Callable[[Message], None]
H = TypeVar("H", bound=Handler)

MAX_CLAIM = 100  # the server's cap on one claim
ERROR_CHARS = 500  # the server keeps this much of a nack's error
MAX_BACKOFF = 10.0


class Retry(Exception):  # raised by a handler: "retry", not an error of ours
    """Raise from a handler to nack with a delay of your choosing (``after`` seconds; the
    endpoint's retry schedule still decides how many tries there are)."""

    def __init__(self, reason: str = "retry requested by the handler", after: float = 0) -> None:
        super().__init__(reason)
        self.after = after


class Hooks:
    """Metrics hooks: subclass and override what you count. Each is called on the consumer's
    event loop and must not block."""

    def claimed(self, count: int) -> None:
        """A claim returned ``count`` messages (0 for an empty long poll)."""

    def handled(self, message: Message, seconds: float) -> None:
        """The handler returned; the message is acked (or its lease was lost: ``lease_lost``)."""

    def failed(self, message: Message, error: BaseException, seconds: float) -> None:
        """The handler raised; the message is nacked with the error."""

    def released(self, message: Message) -> None:
        """The consumer stopped before it finished the message: nacked for another to take."""

    def lease_lost(self, message: Message) -> None:
        """The answer came after the lease lapsed (another consumer may hold it): nothing was
        settled, and the message will be handled again."""

    def unmatched(self, message: Message) -> None:
        """No handler's pattern matches the type: acked (subscribe to what you handle)."""

    def unavailable(self, error: InterlinkError, backoff: float) -> None:
        """Interlink did not answer (down, 5xx, 429): the consumer retries after ``backoff``."""


@dataclass
class Stats:
    claimed: int = 0
    handled: int = 0
    failed: int = 0
    released: int = 0
    lease_lost: int = 0
    unmatched: int = 0


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:ERROR_CHARS]


def _setting(value: str | None, env: str) -> str:
    value = value or os.environ.get(env)
    if not value:
        raise ValueError(f"no {env}: pass it to Consumer or set the environment variable")
    return value


def _retryable(error: InterlinkError) -> bool:
    """Worth trying again unchanged: Interlink unreachable, failing or busy."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, ApiError) and (error.retryable or error.status >= 500)


class Consumer:
    """``app = Consumer(base_url, api_key, endpoint_id)``; ``@app.handler("booking.*")`` on
    async (or plain) functions taking a :class:`Message`; ``await app.run()`` or
    ``interlink-consume module:app``.

    ``concurrency`` messages are handled at once at most (claims ask for no more than the free
    slots); ``lease_seconds`` is how long a handler has before the message may go to another
    consumer; ``retry_after_seconds`` the least delay of a failed message's next try (None: the
    endpoint's retry schedule); ``shutdown_seconds`` how long running handlers get at a stop;
    ``extend_leases``: a running handler's lease is extended each half lease, so a handler may
    take longer than ``lease_seconds`` while its process lives.
    ``base_url``, ``api_key`` and ``endpoint_id`` left out are read when it runs from
    ``INTERLINK_API_URL``, ``INTERLINK_API_KEY`` and ``INTERLINK_ENDPOINT_ID``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        endpoint_id: str | None = None,
        *,
        concurrency: int = 10,
        lease_seconds: float = 30.0,
        wait_seconds: float = 20.0,
        retry_after_seconds: float | None = None,
        shutdown_seconds: float = 10.0,
        extend_leases: bool = True,
        hooks: Hooks | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url, self.api_key, self.endpoint_id = base_url, api_key, endpoint_id
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.retry_after_seconds = retry_after_seconds
        self.shutdown_seconds = shutdown_seconds
        self.extend_leases = extend_leases
        self.hooks = hooks or Hooks()
        self.stats = Stats()
        self._transport = transport
        self._handlers: list[tuple[str, Handler]] = []
        self._held: set[str] = set()  # the delivery ids this process holds
        self._tails: dict[str, asyncio.Task[None]] = {}  # each key's last message's task
        self._freed = asyncio.Event()
        self._stop = asyncio.Event()

    def handler(self, pattern: str = "*") -> Callable[[H], H]:
        """Registers a handler for event types matching ``pattern`` (``*`` and ``?`` as in
        shell patterns); the first registered match handles a message."""

        def register(fn: H) -> H:
            self._handlers.append((pattern, fn))
            return fn

        return register

    def stop(self) -> None:
        """Stops claiming; running handlers get ``shutdown_seconds`` to finish."""
        self._stop.set()

    async def run(self, *, signals: bool = True) -> None:
        """Consumes until :meth:`stop` (or SIGTERM/SIGINT when ``signals``), then shuts down
        gracefully. Raises an :class:`ApiError` Interlink answers that retrying cannot mend
        (a wrong key, an unknown or push endpoint)."""
        loop = asyncio.get_running_loop()
        installed = []
        if signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signum, self.stop)
                    installed.append(signum)
        base_url, api_key, endpoint_id = (
            _setting(self.base_url, "INTERLINK_API_URL"),
            _setting(self.api_key, "INTERLINK_API_KEY"),
            _setting(self.endpoint_id, "INTERLINK_ENDPOINT_ID"),
        )
        # A long poll holds its request up to wait_seconds: the timeout outlasts it.
        timeout = self.wait_seconds + 30.0
        client = AsyncInterlink(base_url, api_key, timeout=timeout, transport=self._transport)
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._claim_loop(client, endpoint_id, tasks)
        finally:
            await self._shut_down(tasks)
            await client.aclose()
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _claim_loop(
        self, client: AsyncInterlink, endpoint_id: str, tasks: set[asyncio.Task[None]]
    ) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            free = self.concurrency - len(self._held)
            if free <= 0:
                self._freed.clear()
                await self._until(self._freed.wait())
                continue
            try:
                messages = await self._until(
                    client.claim(
                        endpoint_id,
                        max=min(free, MAX_CLAIM),
                        lease_seconds=self.lease_seconds,
                        wait_seconds=self.wait_seconds,
                    )
                )
            except InterlinkError as exc:
                if not _retryable(exc):
                    raise
                backoff = min(MAX_BACKOFF, max(0.2, backoff * 2))
                self.hooks.unavailable(exc, backoff)
                log.warning("interlink unavailable (%s); claiming again in %.1f s", exc, backoff)
                await self._until(asyncio.sleep(backoff))
                continue
            backoff = 0.0
            if messages is None:  # stopped while waiting
                return
            self.stats.claimed += len(messages)
            self.hooks.claimed(len(messages))
            for message in messages:
                self._held.add(message.delivery_id)
                before = self._tails.get(message.key) if message.key is not None else None
                task = asyncio.create_task(self._process(client, message, before))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if message.key is not None:
                    self._tails[message.key] = task
                    task.add_done_callback(functools.partial(self._forget, message.key))

    async def _until(self, work: Awaitable[Any]) -> Any:
        """``work``'s result, or None once a stop comes first (``work`` is cancelled)."""
        job = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({job, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if job.done():
            return job.result()
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await job
        return None

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    def _match(self, type_: str) -> Handler | None:
        for pattern, fn in self._handlers:
            if fnmatch.fnmatchcase(type_, pattern):
                return fn
        return None

    async def _process(
        self, client: AsyncInterlink, message: Message, before: asyncio.Task[None] | None
    ) -> None:
        try:
            if before is not None:  # the key's previous message first, however it ends
                await asyncio.wait({before})
            if self._stop.is_set():
                await self._release(client, message)
                return
            await self._handle(client, message)
        except asyncio.CancelledError:  # the shutdown deadline passed mid-handler
            await self._release(client, message)
        finally:
            self._held.discard(message.delivery_id)
            self._freed.set()

    async def _handle(self, client: AsyncInterlink, message: Message) -> None:
        fn = self._match(message.type)
        if fn is None:
            self.stats.unmatched += 1
            self.hooks.unmatched(message)
            await self._answer(client, message, None)
            return
        started = time.monotonic()
        handled = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(client, message, handled))
        failure: Exception | None = None
        try:
            if inspect.iscoroutinefunction(fn):
                await fn(message)
            else:
                await asyncio.to_thread(fn, message)
        except Exception as exc:  # the handler's failure is the message's, not the loop's
            failure = exc
        finally:
            # An extension under way finishes first: the answer needs the lease it gives.
            handled.set()
            await keeper
        seconds = time.monotonic() - started
        if failure is None:
            self.stats.handled += 1
            self.hooks.handled(message, seconds)
            await self._answer(client, message, None)
            return
        self.stats.failed += 1
        self.hooks.failed(message, failure, seconds)
        after = failure.after if isinstance(failure, Retry) else self.retry_after_seconds
        await self._answer(client, message, (_error_text(failure), after))

    async def _keep_lease(
        self, client: AsyncInterlink, message: Message, handled: asyncio.Event
    ) -> None:
        """Until the handler is done: the lease extended by ``lease_seconds`` each half of it,
        so a slow handler keeps its message (``extend_leases``); a failed extension is tried
        again at the next turn, a lost lease ends it (the late answer will say so)."""
        if not self.extend_leases:
            return
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handled.wait(), self.lease_seconds / 2)
            if handled.is_set():
                return
            try:
                await client.extend_lease(message, self.lease_seconds)
            except (Conflict, NotFound):
                return
            except InterlinkError as exc:
                log.warning("lease of %s not extended: %s", message.delivery_id, exc)

    async def _release(self, client: AsyncInterlink, message: Message) -> None:
        self.stats.released += 1
        self.hooks.released(message)
        await asyncio.shield(self._answer(client, message, ("released: the consumer stopped", 0.0)))

    async def _answer(
        self, client: AsyncInterlink, message: Message, failure: tuple[str, float | None] | None
    ) -> None:
        """Ack (``failure`` None) or nack; retried while Interlink is unavailable, until the
        lease would have lapsed anyway."""
        deadline = time.monotonic() + self.lease_seconds
        backoff = 0.1
        while True:
            try:
                if failure is None:
                    await client.ack(message)
                else:
                    await client.nack(message, failure[0], failure[1])
                return
            except (Conflict, NotFound):
                self.stats.lease_lost += 1
                self.hooks.lease_lost(message)
                return
            except InterlinkError as exc:
                if not _retryable(exc) or time.monotonic() + backoff > deadline:
                    log.warning("answer to %s not delivered: %s", message.delivery_id, exc)
                    return
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _shut_down(self, tasks: set[asyncio.Task[None]]) -> None:
        if not tasks:
            return
        self._stop.set()  # not yet started: released at once (see _process)
        _, late = await asyncio.wait(set(tasks), timeout=self.shutdown_seconds)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5.0)
