"""The harness processes (load generator, receivers) and one load step against a system.

A step: the load generator sends ``rate`` events/s for ``duration`` s while the orchestrator
samples, every ``SAMPLE_INTERVAL``, how many events have been acknowledged and how many
deliveries have arrived; then it waits until every acknowledged event has reached both of its
endpoints (or ``drain_timeout`` passes), and analyzes what was sent against what arrived.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench import loadgen, receivers
from bench.loadgen import RunResult, RunSpec
from bench.metrics import GroupUsage, Sampler, cpu_delta, cpu_delta_per_process
from bench.procs import free_port, register, unregister
from bench.receivers import Correctness, Record, analyze
from bench.workload import ENDPOINTS_PER_TENANT, Workload

SAMPLE_INTERVAL = 0.5
LOADGEN = "load generator"
RECEIVERS = "receivers"


@dataclass
class Sample:
    t: float  # seconds since the first request was due
    acked_events: int
    delivered: int  # distinct (endpoint, event) deliveries
    in_flight: int


@dataclass
class Step:
    label: str
    rate: float
    duration: float
    sent: RunResult
    correctness: Correctness
    samples: list[Sample]
    cpu: dict[str, float]  # CPU seconds per process group, sending and draining
    process_cpu: dict[str, float]  # CPU seconds per process of the system under test
    memory: dict[str, GroupUsage]  # peaks during the step
    drained: bool
    drain_seconds: float
    window: tuple[float, float] = (0.0, 0.0)
    acked_rate: float = 0.0  # events/s acknowledged over the window
    delivered_rate: float = 0.0  # events/s delivered to all their endpoints over the window
    backlog_growth: float = 0.0  # deliveries owed but not made: end of window minus start
    notes: list[str] = field(default_factory=list)

    def sustained(self) -> bool:
        return not self.notes

    def cpu_per_1000(self, group: str) -> float:
        events = max(1, self.correctness.acked_events)
        return self.cpu.get(group, 0.0) / events * 1000.0


class Harness:
    """Owns the load generator and receivers processes; runs steps against one system at once."""

    def __init__(
        self, workload: Workload, sampler: Sampler, *, client: str = "fast", receiver: str = "fast"
    ) -> None:
        self.workload = workload
        self.sampler = sampler
        self.client = client
        ctx = multiprocessing.get_context("spawn")
        self._lg_counters: Any = ctx.RawArray("d", loadgen.COUNTERS)
        self._rc_counters: Any = ctx.RawArray("d", receivers.COUNTERS)
        self._lg, lg_child = ctx.Pipe()
        self._rc, rc_child = ctx.Pipe()
        self.port = free_port()
        self._procs = [
            ctx.Process(
                target=loadgen.main,
                args=(lg_child, self._lg_counters, workload.seed, 1),
                name="bench-loadgen",
                daemon=True,
            ),
            ctx.Process(
                target=receivers.main,
                args=(
                    rc_child,
                    self._rc_counters,
                    [e.secret for e in workload.endpoints],
                    self.port,
                    receiver,
                ),
                name="bench-receivers",
                daemon=True,
            ),
        ]
        register(self)
        for proc in self._procs:
            proc.start()
        lg_child.close()
        rc_child.close()
        _expect(self._rc, "ready", timeout=30)
        sampler.watch(LOADGEN, lambda: [p.pid for p in self._procs[:1] if p.pid])
        sampler.watch(RECEIVERS, lambda: [p.pid for p in self._procs[1:] if p.pid])

    @property
    def endpoint_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.port}/hooks/{e.index}" for e in self.workload.endpoints]

    def reset(self) -> None:
        self._rc.send(("collect", True))
        _expect(self._rc, "records", timeout=60)

    def fault(self, stop_receivers_after: int | None) -> None:
        self._rc.send(("fault", stop_receivers_after))
        _expect(self._rc, "ok", timeout=10)

    def delivered(self) -> int:
        return int(self._rc_counters[receivers.DELIVERED])

    def step(
        self,
        label: str,
        groups: list[str],
        targets: tuple[str, ...],
        rate: float,
        duration: float,
        *,
        drain_timeout: float,
        window_skip: float = 0.0,
        connections: int = 256,
        closed_loop: int = 0,
    ) -> Step:
        """One load step; CPU is measured for ``groups`` (and the harness's own processes)."""
        self.reset()
        self.sampler.reset_peaks()
        before = self.sampler.usage()
        spec = RunSpec(
            targets,
            rate,
            duration,
            connections=connections,
            client=self.client,
            closed_loop=closed_loop,
        )
        self._lg.send(("run", spec))
        _, t0 = _expect(self._lg, "started", timeout=300)
        samples: list[Sample] = []
        result: RunResult | None = None
        while result is None:
            if self._lg.poll(SAMPLE_INTERVAL):
                kind, payload = self._lg.recv()
                if kind == "error":
                    raise RuntimeError(f"load generator failed: {payload}")
                result = payload
            samples.append(self._sample(t0))
        # Drain: wait until every acknowledged event reached all its endpoints.
        owed = int(self._lg_counters[loadgen.ACKED_EVENTS]) * ENDPOINTS_PER_TENANT
        drain_started = time.monotonic()
        deadline = drain_started + drain_timeout
        next_sample = drain_started + SAMPLE_INTERVAL
        while self.delivered() < owed and time.monotonic() < deadline:
            time.sleep(0.02)
            if time.monotonic() >= next_sample:
                samples.append(self._sample(t0))
                next_sample += SAMPLE_INTERVAL
        drained = self.delivered() >= owed
        drain_seconds = time.monotonic() - drain_started
        # A moment for deliveries that are sent twice to show up as duplicates.
        time.sleep(0.3)
        after = self.sampler.usage()
        self._rc.send(("collect", True))
        _, (records, bad) = _expect(self._rc, "records", timeout=120)
        records_list: list[Record] = records
        correctness = analyze(self.workload, result, records_list, len(bad))
        step = Step(
            label=label,
            rate=rate,
            duration=duration,
            sent=result,
            correctness=correctness,
            samples=samples,
            cpu=cpu_delta(before, after),
            process_cpu=cpu_delta_per_process(before[groups[0]], after[groups[0]])
            if groups and groups[0] in before and groups[0] in after
            else {},
            memory=after,
            drained=drained,
            drain_seconds=drain_seconds,
        )
        _judge(step, window_skip, closed_loop > 0)
        if bad:
            step.notes.append(f"bad signatures: {bad[:3]}")
        return step

    def _sample(self, t0: float) -> Sample:
        return Sample(
            t=time.time() - t0,
            acked_events=int(self._lg_counters[loadgen.ACKED_EVENTS]),
            delivered=self.delivered(),
            in_flight=int(self._lg_counters[loadgen.IN_FLIGHT]),
        )

    def stop(self) -> None:
        unregister(self)
        for conn in (self._lg, self._rc):
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop", None))
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for name in (LOADGEN, RECEIVERS):
            self.sampler.forget(name)


def _expect(conn: Connection, kind: str, timeout: float) -> tuple[str, Any]:
    if not conn.poll(timeout):
        raise RuntimeError(f"no {kind!r} from a harness process within {timeout:g} s")
    got, payload = conn.recv()
    if got == "error":
        raise RuntimeError(f"harness process failed: {payload}")
    if got != kind:
        raise RuntimeError(f"expected {kind!r} from a harness process, got {got!r}")
    return got, payload


def _at(samples: list[Sample], t: float) -> Sample:
    """The sample nearest to ``t`` (samples are ordered by time)."""
    return min(samples, key=lambda s: abs(s.t - t))


def _judge(step: Step, window_skip: float, closed_loop: bool) -> None:
    """Rates over the window [skip, duration] and whether the step was sustained."""
    c = step.correctness
    if c.rejected:
        step.notes.append(f"{c.rejected} requests not acknowledged ({c.first_error})")
    if c.lost:
        step.notes.append(f"{c.lost} deliveries lost")
    if not step.drained:
        step.notes.append(f"not drained {step.drain_seconds:.0f} s after the step")
    if len(step.samples) < 2:
        return
    start, end = _at(step.samples, window_skip), _at(step.samples, step.duration)
    span = end.t - start.t
    if span <= 0:
        return
    step.window = (start.t, end.t)
    per_event = ENDPOINTS_PER_TENANT
    step.acked_rate = (end.acked_events - start.acked_events) / span
    step.delivered_rate = (end.delivered - start.delivered) / span / per_event
    backlog_start = start.acked_events * per_event - start.delivered
    backlog_end = end.acked_events * per_event - end.delivered
    step.backlog_growth = backlog_end - backlog_start
    if closed_loop:
        step.rate = step.acked_rate  # what a closed loop offers is what the system takes
        return
    if step.acked_rate < 0.97 * step.rate:
        step.notes.append(f"acknowledged {step.acked_rate:.0f}/s of {step.rate:.0f}/s")
    if step.delivered_rate < 0.97 * step.rate:
        step.notes.append(f"delivered {step.delivered_rate:.0f}/s of {step.rate:.0f}/s")
    # Growing by more than one second's worth of deliveries over the window is falling behind.
    if step.backlog_growth > step.rate * per_event:
        step.notes.append(f"backlog grew by {step.backlog_growth:.0f} deliveries")
