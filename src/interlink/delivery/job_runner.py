"""The job runner: leases queued bulk jobs (redrive, replay) and works them through, paced.

Each job runs as its own task, one step (one batch, one transaction) at a time, each step
waiting for its tokens in the job's bucket; the dispatcher is woken after every step that
queued something. The lease is renewed by every step, so a runner that dies lets its jobs go to
another (or to the next process on SQLite, which takes them back at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
import time
from collections.abc import Callable

import structlog

from interlink.domain.jobs import Job, JobStatus, batch_size, give_back, pacing
from interlink.domain.rate_limit import full_bucket, take
from interlink.storage.jobs import JobImpossible, JobLost, Jobs

log = structlog.get_logger("interlink.jobs")

# A step that fails (the database away, say) is tried again after a growing pause; this many
# failures in a row fail the job, with the last error kept on it.
MAX_FAILURES = 5
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


class JobRunner:
    def __init__(
        self,
        jobs: Jobs,
        *,
        concurrency: int = 4,
        lease_seconds: float = 60.0,
        poll_interval: float = 1.0,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._on_progress = on_progress
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                free = self._concurrency - len(self._running)
                if free > 0:
                    try:
                        claimed = await self._jobs.claim(
                            self.owner, time.time(), free, self._lease_seconds
                        )
                    except Exception:
                        log.exception("jobs.claim_failed")
                        claimed = []
                    for job in claimed:
                        if job.id in self._running:
                            continue  # ours already: its lease had run out between two steps
                        task = asyncio.create_task(self._work(job), name=f"job {job.id}")
                        self._running[job.id] = task
                        task.add_done_callback(functools.partial(self._finished, job.id))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            tasks = list(self._running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("jobs.crashed", job_id=job_id, error=repr(task.exception()))
        self.wake()  # a slot is free

    async def _work(self, job: Job) -> None:
        log.info("jobs.started", job_id=job.id, kind=job.kind.value, resumed=job.cursor is not None)
        limit = pacing(job.rate)
        batch = batch_size(job.rate)
        bucket = job.bucket or full_bucket(limit, time.time())
        failures = 0
        while job.status is JobStatus.RUNNING:
            try:
                if job.total is None:
                    job = await self._jobs.count(job, self.owner, time.time())
                    continue
                granted, bucket, wait = take(bucket, limit, time.time(), batch)
                if not granted:
                    await asyncio.sleep(wait)
                    continue
                step = await self._jobs.step(
                    job, self.owner, batch, bucket, time.time(), self._lease_seconds
                )
            except JobLost:
                log.info("jobs.let_go", job_id=job.id)  # cancelled, or another runner has it
                return
            except Exception as exc:
                failures += 1
                final = failures >= MAX_FAILURES or isinstance(exc, JobImpossible)
                if isinstance(exc, JobImpossible):
                    log.warning("jobs.impossible", job_id=job.id, reason=str(exc))
                else:
                    log.exception("jobs.step_failed", job_id=job.id, failures=failures)
                if not await self._failed(job, exc, final=final):
                    return
                await asyncio.sleep(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1])
                continue
            failures = 0
            # Tokens of a batch that found fewer items go back: the rate counts items moved.
            bucket = give_back(bucket, limit, batch - (step.job.done - job.done))
            job = step.job
            if step.queued and self._on_progress is not None:
                self._on_progress()
        log.info("jobs.finished", job_id=job.id, status=job.status.value, done=job.done)

    async def _failed(self, job: Job, exc: Exception, *, final: bool) -> bool:
        """Records the error; False when the job is over (failed, cancelled or taken)."""
        try:
            error = str(exc) if isinstance(exc, JobImpossible) else f"{type(exc).__name__}: {exc}"
            await self._jobs.record_error(job, self.owner, error, time.time(), final=final)
        except JobLost:
            return False
        except Exception:
            log.exception("jobs.record_error_failed", job_id=job.id)
        return not final
