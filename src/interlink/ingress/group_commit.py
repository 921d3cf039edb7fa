"""Group commit: concurrent ingest and publish requests share one durable transaction.

Requests queue while the previous batch commits, so under load a batch grows to what one fsync
can carry and the cost of durability is paid once per batch, not once per webhook. A request's
events (one webhook, or a published batch of up to 1,000) are never split across transactions:
they are stored together or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog

from interlink.domain.models import Event
from interlink.storage.ports import Appended, LogWriter

log = structlog.get_logger("interlink.ingress")

# One request's events and the future their answers go to.
_Item = tuple[Sequence[Event], "asyncio.Future[list[Appended]]"]


class GroupCommit:
    def __init__(
        self, log: LogWriter, *, max_batch: int = 500, on_commit: Callable[[], None] | None = None
    ) -> None:
        self._log = log
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._held: _Item | None = None  # taken from the queue, waiting for the next batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        waiting = [self._held] if self._held is not None else []
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for _, future in waiting:
            if not future.done():
                future.set_exception(ConnectionError("Interlink is shutting down"))

    async def submit(self, event: Event) -> Appended:
        (appended,) = await self.submit_all([event])
        return appended

    async def submit_all(self, events: Sequence[Event]) -> list[Appended]:
        """Stores ``events`` in one transaction (shared with other requests'), durable when this
        returns; each answer in their order."""
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        await self._queue.put((events, future))
        return await future

    async def _run(self) -> None:
        while True:
            first, self._held = self._held or await self._queue.get(), None
            batch, size = [first], len(first[0])
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if size + len(item[0]) > self._max_batch:
                    self._held = item  # whole requests only: it opens the next batch
                    break
                batch.append(item)
                size += len(item[0])
            if await self._commit(batch) or len(batch) == 1:
                continue
            # The batch failed as a whole: one request the store refuses must not turn its
            # neighbours' answers into 503s, so each goes again in a transaction of its own.
            for item in batch:
                await self._commit([item])

    async def _commit(self, batch: list[_Item]) -> bool:
        """Appends a batch and answers its requests; False (nothing answered) if it failed."""
        try:
            results = await self._log.append([e for events, _ in batch for e in events])
        except Exception as exc:
            if len(batch) > 1:
                return False
            log.warning("ingest.append_failed", error=type(exc).__name__)
            _, future = batch[0]
            if not future.done():
                future.set_exception(exc)  # the request answers 503; the batcher lives on
            return True
        start = 0
        for events, future in batch:
            if not future.done():
                future.set_result(results[start : start + len(events)])
            start += len(events)
        if self._on_commit is not None:
            self._on_commit()
        return True
