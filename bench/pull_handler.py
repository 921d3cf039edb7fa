"""The handlers both sides of ``bench.pull`` run: count one message (a byte appended to this
process's file in ``BENCH_PULL_DIR``), nothing else, so what is measured is getting messages to
a handler and settling them. Interlink's is a :class:`Consumer` run by ``interlink-consume
bench.pull_handler:app``; the baseline's is the Celery task ``consume``
(bench/baselines/fastapi_celery/tasks.py)."""

from __future__ import annotations

import os
from pathlib import Path

from interlink_client import Consumer, Message

_fd: int | None = None


def count() -> None:
    global _fd
    if _fd is None:  # per process (Celery's pool forks after import)
        path = Path(os.environ["BENCH_PULL_DIR"]) / f"{os.getpid()}.count"
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(_fd, b".")


app = Consumer(concurrency=int(os.environ.get("BENCH_PULL_CONCURRENCY", "20")))


@app.handler()
async def handle(message: Message) -> None:
    count()
