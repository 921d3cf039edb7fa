"""Run the benchmark: ``python -m bench.run [--smoke] [--only interlink|baseline] ...``.

Starts the harness (receivers, load generator), then each system in turn on loopback, runs the
steps and prints the table. Full mode (about 8 minutes on 2 cores): first, per system, a
warm-up and a search for the highest rate it sustains for 30 s; then, per system on a fresh
start, 30 s at one fixed rate (1,000 events/s, or the highest rate every system sustained if
that is lower) for latency, CPU and memory. Smoke mode, per system: a warm-up and 3 s at 200
events/s. Exits non-zero unless nothing was lost, every duplicate carried the same webhook-id
and every signature verified.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.harness import Harness, Step
from bench.metrics import Sampler, percentile
from bench.procs import install_handlers, register, stop_all, unregister
from bench.profile import Recorder
from bench.report import SUT, SystemResult, details, table
from bench.systems import NOT_BUILT, SYSTEMS, System
from bench.workload import Workload


@dataclass
class Options:
    smoke: bool
    only: str | None
    rate: float
    duration: float
    step_seconds: float
    window_skip: float
    max_steps: int
    probe_rate: float
    probe_seconds: float
    connections: int
    client: str
    receiver: str
    baseline_concurrency: int
    baseline_web_workers: int
    baseline_enqueue: str
    fault_stop_receivers_after: int | None
    json_path: Path | None
    profile_dir: Path | None


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="a few seconds, correctness only")
    p.add_argument("--only", choices=sorted(SYSTEMS), help="run one system (no ratio then)")
    p.add_argument("--rate", type=float, help="fixed-rate step, events/s (1000; smoke 200)")
    p.add_argument("--duration", type=float, help="fixed-rate step, seconds (30; smoke 3)")
    p.add_argument("--step-seconds", type=float, default=33.0, help="search step length")
    p.add_argument("--window-skip", type=float, default=3.0, help="search step ramp-up, s")
    p.add_argument("--max-steps", type=int, default=5, help="search steps after the probe")
    p.add_argument("--probe-rate", type=float, default=4000.0, help="overload probe, events/s")
    p.add_argument("--probe-seconds", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=256, help="load generator connections")
    p.add_argument("--client", choices=("fast", "aiohttp"), default="fast", help="load generator")
    p.add_argument("--receiver", choices=("fast", "aiohttp"), default="fast", help="receivers")
    p.add_argument("--baseline-concurrency", type=int, default=2, help="Celery prefork pool")
    p.add_argument("--baseline-web-workers", type=int, default=1, help="uvicorn workers")
    p.add_argument("--baseline-enqueue", choices=("thread", "inline"), default="thread")
    p.add_argument(
        "--fault-stop-receivers-after",
        type=int,
        metavar="N",
        help="test hook: the receivers stop listening after N deliveries (the run must fail)",
    )
    p.add_argument("--json", type=Path, dest="json_path", help="also write the results here")
    p.add_argument(
        "--profile",
        type=Path,
        dest="profile_dir",
        metavar="DIR",
        help="record the systems with py-spy during the fixed-rate step, into DIR (py-spy pauses"
        " them to sample: take the table from a run without it)",
    )
    a = p.parse_args(argv)
    return Options(
        smoke=a.smoke,
        only=a.only,
        rate=a.rate or (200.0 if a.smoke else 1000.0),
        duration=a.duration or (3.0 if a.smoke else 30.0),
        step_seconds=a.step_seconds,
        window_skip=a.window_skip,
        max_steps=a.max_steps,
        probe_rate=a.probe_rate,
        probe_seconds=a.probe_seconds,
        connections=a.connections,
        client=a.client,
        receiver=a.receiver,
        baseline_concurrency=a.baseline_concurrency,
        baseline_web_workers=a.baseline_web_workers,
        baseline_enqueue=a.baseline_enqueue,
        fault_stop_receivers_after=a.fault_stop_receivers_after,
        json_path=a.json_path,
        profile_dir=a.profile_dir,
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_system(key: str, opts: Options) -> System:
    if key == "baseline":
        from bench.baselines.fastapi_celery.system import FastapiCelery

        return FastapiCelery(
            web_workers=opts.baseline_web_workers,
            concurrency=opts.baseline_concurrency,
            enqueue=opts.baseline_enqueue,
        )
    return SYSTEMS[key]()


def _round(rate: float) -> float:
    step = 50.0 if rate >= 500 else 10.0
    return max(step, math.floor(rate / step) * step)


PROBE_SENDERS = 64


# A run function: (label, rate, duration, window skip, closed-loop senders) -> the step.
RunStep = Callable[[str, float, float, float, int], Step]


def search(result: SystemResult, run: RunStep, opts: Options) -> None:
    """The highest rate a system sustains: a closed-loop probe to estimate it, then steps.

    The probe sends back to back over ``PROBE_SENDERS`` connections for a few seconds and
    measures how fast the events it got in were all delivered (first request to last delivery).
    The steps start just below that estimate and move up 25 % after a sustained step, down 20 %
    after one that was not, then bisect, until the bracket is within 8 % or the steps run out.
    """
    probe = run("probe", opts.probe_rate, opts.probe_seconds, 0.0, PROBE_SENDERS)
    result.probe = probe
    span = probe.sent.send_wall + probe.drain_seconds
    estimate = probe.correctness.acked_events / span if span > 0 else 100.0
    log(
        f"  probe: {probe.correctness.acked_events:,} events acknowledged at"
        f" {probe.acked_rate:,.0f}/s, all delivered {span:.1f} s after the first request"
        f" ≈ {estimate:,.0f} ev/s end to end"
    )
    rate = _round(0.9 * estimate)
    low: float | None = None
    high: float | None = None
    tried: set[float] = set()
    for _ in range(opts.max_steps):
        if rate in tried:
            break
        tried.add(rate)
        step = run("search", rate, opts.step_seconds, opts.window_skip, 0)
        result.search.append(step)
        if step.sustained():
            low = rate
            if result.best is None or rate > result.best.rate:
                result.best = step
        else:
            high = rate if high is None else min(high, rate)
        if low is not None and high is not None:
            if high / low <= 1.08:
                break
            rate = _round((low + high) / 2)
        elif low is not None:
            rate = _round(low * 1.25)
        else:
            rate = _round(rate * 0.8)
    result.failed_below = high


def run_system(
    result: SystemResult,
    opts: Options,
    workload: Workload,
    harness: Harness,
    *,
    fixed_rate: float | None,
) -> None:
    """Start the system, warm it up, then search its throughput (``fixed_rate`` None) or run
    the fixed-rate step; stop it whatever happens. Failures are kept in ``result.error``."""
    system = make_system(result.key, opts)
    register(system)
    try:
        log(f"{system.title}: starting")
        targets = system.start(workload, harness.endpoint_urls).ingest_urls
        result.description = system.describe()
        harness.sampler.watch(SUT, system.pids)

        def run(label: str, rate: float, duration: float, skip: float, closed: int) -> Step:
            if closed:
                log(f"  {label}: {closed} connections back to back for {duration:g} s")
            step = harness.step(
                label,
                [SUT],
                targets,
                rate,
                duration,
                drain_timeout=30.0 if opts.smoke else 180.0,
                window_skip=skip,
                connections=opts.connections,
                closed_loop=closed,
            )
            result.steps.append(step)
            c = step.correctness
            verdict = "" if step.sustained() else " — " + "; ".join(step.notes)
            offered = (
                f"closed loop x {duration:g} s" if closed else f"{rate:,.0f} ev/s x {duration:g} s"
            )
            log(
                f"  {label}: {offered} → {c.acked_events:,} events acked,"
                f" {c.delivered:,}/{c.expected:,} delivered, lost {c.lost}, dup {c.duplicates},"
                f" e2e p99 {percentile(c.e2e_ms, 99):,.0f} ms, drained in"
                f" {step.drain_seconds:.1f} s{verdict}"
            )
            return step

        run("warm-up", 100.0, 2.0, 0.0, 0)
        if opts.fault_stop_receivers_after is not None:
            harness.fault(opts.fault_stop_receivers_after)
        if fixed_rate is None:
            search(result, run, opts)
        else:
            recorder = None
            if opts.profile_dir is not None:
                recorder = Recorder(opts.profile_dir, result.key, system.pids(), opts.duration)
            result.fixed = run("fixed", fixed_rate, opts.duration, 0.0, 0)
            if recorder is not None:
                for summary in recorder.finish():
                    log(f"  profile: {summary}")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"{system.title} failed: {result.error}")
        traceback.print_exc()
        tail = getattr(system, "log_tail", None)
        if callable(tail):
            print(tail(), file=sys.stderr)
    finally:
        harness.sampler.forget(SUT)
        log(f"{system.title}: stopping")
        system.stop()
        unregister(system)


def common_rate(results: list[SystemResult], wanted: float) -> float:
    """The rate every system is compared at: ``wanted``, or the highest every one sustained."""
    rate = wanted
    for r in results:
        if r.best is not None:
            rate = min(rate, r.best.rate)
        elif r.failed_below is not None:
            rate = min(rate, _round(r.failed_below * 0.5))
    return rate


def machine() -> str:
    mem = psutil.virtual_memory().total / 1024**3
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({cpu}), "
        f"{mem:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {datetime.date.today().isoformat()}"
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    install_handlers()
    workload = Workload.make()
    keys = [opts.only] if opts.only else list(SYSTEMS)
    started = time.monotonic()
    log(
        f"{'smoke' if opts.smoke else 'full'} run on {machine()}: {len(workload.sources)} sources,"
        f" {len(workload.endpoints)} endpoints, {workload.keys} booking keys"
    )
    sampler = Sampler()
    results = [SystemResult(key, make_system(key, opts).title, "", opts.smoke) for key in keys]
    rate = opts.rate
    try:
        harness = Harness(workload, sampler, client=opts.client, receiver=opts.receiver)
        try:
            if not opts.smoke:
                # Phase 1: each system's highest sustained rate. Phase 2 (below): every system
                # at one rate they all sustain, on a fresh start, for latency, CPU and memory.
                for result in results:
                    run_system(result, opts, workload, harness, fixed_rate=None)
                rate = common_rate(results, opts.rate)
                if rate < opts.rate:
                    log(
                        f"not every system sustains {opts.rate:,.0f} ev/s: comparing at {rate:,.0f}"
                    )
            for result in results:
                if result.error is None:
                    run_system(result, opts, workload, harness, fixed_rate=rate)
        finally:
            harness.stop()
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        stop_all()
        sampler.close()
        return 130
    finally:
        stop_all()
    sampler.close()

    print()
    print(table(results, NOT_BUILT if opts.only != "baseline" else (), rate))
    print()
    for r in results:
        print(details(r))
    elapsed = time.monotonic() - started
    print(f"\n{machine()}; took {elapsed:.0f} s")
    if opts.json_path is not None:
        write_json(opts.json_path, results)

    problems = [p for r in results for p in r.problems()]
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    if opts.smoke:
        print("\nsmoke OK: 0 lost, duplicates carry one webhook-id, every signature verified")
    return 0


def write_json(path: Path, results: list[SystemResult]) -> None:
    def step(s: Step) -> dict[str, object]:
        c = s.correctness
        return {
            "label": s.label,
            "rate": s.rate,
            "duration": s.duration,
            "sustained": s.sustained(),
            "notes": s.notes,
            "acked_rate": s.acked_rate,
            "delivered_rate": s.delivered_rate,
            "backlog_growth": s.backlog_growth,
            "drain_seconds": s.drain_seconds,
            "acked_events": c.acked_events,
            "delivered": c.delivered,
            "lost": c.lost,
            "duplicates": c.duplicates,
            "order_violations": c.order_violations,
            "e2e_ms": {p: percentile(c.e2e_ms, p) for p in (50, 90, 99, 100)},
            "ack_ms": {p: percentile(c.ack_ms, p) for p in (50, 90, 99, 100)},
            "cpu_seconds": s.cpu,
            "peak_rss": {k: v.peak_rss for k, v in s.memory.items()},
            "peak_pss": {k: v.peak_pss for k, v in s.memory.items()},
        }

    data = {
        "machine": machine(),
        "systems": [
            {
                "key": r.key,
                "title": r.title,
                "description": r.description,
                "error": r.error,
                "best_rate": r.best.rate if r.best else None,
                "failed_below": r.failed_below,
                "steps": [step(s) for s in r.steps],
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
