"""Group commit: concurrent ingest requests share one durable transaction.

Requests queue while the previous batch commits, so under load a batch grows to what one fsync
can carry and the cost of durability is paid once per batch, not once per webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from interlink.domain.models import Event
from interlink.storage.ports import Appended, LogWriter

log = structlog.get_logger("interlink.ingress")


class GroupCommit:
    def __init__(
        self, log: LogWriter, *, max_batch: int = 500, on_commit: Callable[[], None] | None = None
    ) -> None:
        self._log = log
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[tuple[Event, asyncio.Future[Appended]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ConnectionError("Interlink is shutting down"))

    async def submit(self, event: Event) -> Appended:
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if await self._commit(batch) or len(batch) == 1:
                continue
            # The batch failed as a whole: one event the store refuses must not turn its
            # neighbours' answers into 503s, so each goes again in a transaction of its own.
            for item in batch:
                await self._commit([item])

    async def _commit(self, batch: list[tuple[Event, asyncio.Future[Appended]]]) -> bool:
        """Appends a batch and answers its requests; False (nothing answered) if it failed."""
        try:
            results = await self._log.append([event for event, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                return False
            log.warning("ingest.append_failed", error=type(exc).__name__)
            _, future = batch[0]
            if not future.done():
                future.set_exception(exc)  # the request answers 503; the batcher lives on
            return True
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        if self._on_commit is not None:
            self._on_commit()
        return True
