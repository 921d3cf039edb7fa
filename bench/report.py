"""The results of a run, per system, and the table that compares them.

Rows are figures, columns are systems (Interlink's configurations, then the baseline), the last
column is the ratio Interlink / baseline. Configurations that are not built yet get a column of
"n/a (not built yet)".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.harness import LOADGEN, RECEIVERS, Step
from bench.metrics import MB, percentile

SUT = "system under test"
NOT_BUILT = "n/a (not built yet)"


@dataclass
class SystemResult:
    key: str
    title: str
    description: str
    smoke: bool
    steps: list[Step] = field(default_factory=list)  # every step, warm-up included
    fixed: Step | None = None  # the fixed-rate step (latency, CPU, memory)
    probe: Step | None = None
    search: list[Step] = field(default_factory=list)
    best: Step | None = None  # the highest sustained search step
    failed_below: float | None = None  # the lowest rate tried that was not sustained
    error: str | None = None

    def total(self, attr: str) -> int:
        return sum(int(getattr(s.correctness, attr)) for s in self.steps)

    def problems(self) -> list[str]:
        out = [f"{self.title}: {self.error}"] if self.error else []
        for step in self.steps:
            out += [f"{self.title}, {step.label}: {p}" for p in step.correctness.problems()]
        return out

    def peak(self, attr: str) -> int:
        return max((getattr(s.memory[SUT], attr) for s in self.steps if SUT in s.memory), default=0)


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:,.1f} ms"


def _mb(value: float) -> str:
    return f"{value / MB:,.0f} MB"


def _pct_core(step: Step, group: str) -> str:
    wall = step.sent.send_wall + step.drain_seconds
    return f"{step.cpu.get(group, 0.0) / wall * 100:.0f} % of a core" if wall > 0 else "-"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b or math.isnan(a) or math.isnan(b):
        return ""
    r = a / b
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


@dataclass
class Row:
    label: str
    values: list[str]
    numbers: list[float | None]  # for the ratio
    ratio: bool = True


def _throughput(r: SystemResult) -> tuple[str, float | None]:
    if r.best is not None:
        text = f"{r.best.rate:,.0f} ev/s"
        if r.failed_below is not None:
            text += f" (not at {r.failed_below:,.0f})"
        return text, r.best.rate
    if r.failed_below is not None:
        return f"< {r.failed_below:,.0f} ev/s", None
    return "-", None


Cell = tuple[str, float | None]  # what is shown, and the number behind it (for the ratio)


def rows(results: list[SystemResult], fixed_rate: float) -> list[Row]:
    out: list[Row] = []

    def add(label: str, fn: Callable[[SystemResult], Cell], ratio: bool = True) -> None:
        cells = [fn(r) if r.error is None else ("failed", None) for r in results]
        out.append(Row(label, [c[0] for c in cells], [c[1] for c in cells], ratio))

    smoke = all(r.smoke for r in results)
    at = f"@ {fixed_rate:,.0f} ev/s"

    def fixed(fn: Callable[[Step], Cell]) -> Callable[[SystemResult], Cell]:
        def cell(r: SystemResult) -> Cell:
            if r.fixed is None:
                return "-", None
            text, number = fn(r.fixed)
            if r.fixed.rate != fixed_rate and text:
                text += f" (at {r.fixed.rate:,.0f} ev/s)"
            return text, number

        return cell

    if not smoke:
        add("max sustained throughput, events/s to both endpoints", _throughput)

    def lat(values: Callable[[Step], list[float]], p: float) -> Callable[[Step], tuple[str, float]]:
        def cell(s: Step) -> tuple[str, float]:
            v = percentile(values(s), p)
            note = "" if s.sustained() or smoke else " (fell behind)"
            return _ms(v) + note, v

        return cell

    add(f"end-to-end latency p50 {at}", fixed(lat(lambda s: s.correctness.e2e_ms, 50)))
    add(f"end-to-end latency p99 {at}", fixed(lat(lambda s: s.correctness.e2e_ms, 99)))
    add(f"ingest ack latency p99 {at}", fixed(lat(lambda s: s.correctness.ack_ms, 99)))

    def cpu(s: Step) -> tuple[str, float]:
        v = s.cpu_per_1000(SUT)
        return f"{v:.2f} CPU-s", v

    add(f"CPU per 1,000 events {at}", fixed(cpu))
    if not smoke:
        add(
            "CPU per 1,000 events at the max sustained rate",
            lambda r: cpu(r.best) if r.best is not None else ("-", None),
        )
    add(
        f"peak RSS, sum of processes {at}",
        fixed(lambda s: (_mb(s.memory[SUT].peak_rss), s.memory[SUT].peak_rss)),
    )
    add(
        f"peak PSS, sum of processes {at}",
        fixed(lambda s: (_mb(s.memory[SUT].peak_pss), s.memory[SUT].peak_pss)),
    )
    if not smoke:
        add("peak RSS, sum, whole run", lambda r: (_mb(r.peak("peak_rss")), r.peak("peak_rss")))

    def integrity(r: SystemResult) -> tuple[str, float | None]:
        return (
            f"{r.total('lost')} / {r.total('duplicates')} / {r.total('order_violations')}",
            None,
        )

    add("lost / duplicated / out-of-order deliveries, all steps", integrity, ratio=False)
    add(
        "events acknowledged / deliveries received, all steps",
        lambda r: (f"{r.total('acked_events'):,} / {r.total('delivered'):,}", None),
        ratio=False,
    )
    add(
        f"load generator CPU {at}",
        fixed(lambda s: (_pct_core(s, LOADGEN), None)),
        ratio=False,
    )
    add(f"receivers CPU {at}", fixed(lambda s: (_pct_core(s, RECEIVERS), None)), ratio=False)
    return out


def table(results: list[SystemResult], not_built: tuple[str, ...], fixed_rate: float) -> str:
    """A Markdown table: figures x (Interlink configurations, baseline, ratio).

    ``fixed_rate`` is the rate latency, CPU and memory are compared at; a system that did not
    sustain it was measured at its highest sustained rate, and its cells say so.
    """
    interlink = [r for r in results if r.key != "baseline"]
    baseline = [r for r in results if r.key == "baseline"]
    ordered = interlink + baseline
    data = rows(ordered, fixed_rate)
    headers = ["figure"] + [r.title for r in interlink] + list(not_built)
    headers += [r.title for r in baseline]
    with_ratio = bool(interlink) and bool(baseline)
    if with_ratio:
        headers.append("ratio Interlink / baseline")
    lines: list[list[str]] = []
    for row in data:
        cells = [row.label]
        cells += row.values[: len(interlink)]
        cells += [NOT_BUILT] * len(not_built)
        cells += row.values[len(interlink) :]
        if with_ratio:
            a, b = row.numbers[0], row.numbers[len(interlink)]
            cells.append(_ratio(a, b) if row.ratio else "")
        lines.append(cells)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(headers), sep, *(fmt(line) for line in lines)])


def step_line(step: Step) -> str:
    c = step.correctness
    verdict = "sustained" if step.sustained() else "; ".join(step.notes)
    return (
        f"  {step.label:<14} offered {step.rate:>6,.0f} ev/s for {step.duration:g} s: "
        f"acked {step.acked_rate:>6,.0f}/s, delivered {step.delivered_rate:>6,.0f} ev/s, "
        f"backlog {step.backlog_growth:+,.0f}, drained in {step.drain_seconds:.1f} s, "
        f"e2e p99 {_ms(percentile(c.e2e_ms, 99))}, "
        f"CPU {step.cpu_per_1000(SUT):.2f} s/1k ev — {verdict}"
    )


def details(result: SystemResult) -> str:
    lines = [f"{result.title}: {result.description}"]
    for step in result.steps:
        lines.append(step_line(step))
    fixed = result.fixed
    if fixed is not None:
        sent = fixed.sent
        lines.append(
            f"  load generator at {fixed.rate:,.0f} ev/s: {sent.generate_cpu:.1f} CPU-s making and"
            f" signing {sent.requests:,} requests beforehand, {sent.send_cpu:.1f} CPU-s sending"
            f" them over {sent.send_wall:.1f} s ({sent.send_cpu / max(sent.send_wall, 1e-9):.0%}"
            " of a core)"
        )
        if fixed.process_cpu:
            events = max(1, fixed.correctness.acked_events) / 1000.0
            lines.append(
                "  CPU per 1,000 events per process: "
                + ", ".join(f"{k} {v / events:.2f} s" for k, v in sorted(fixed.process_cpu.items()))
            )
        peaks = fixed.memory[SUT].per_process_peak_rss
        if peaks:
            lines.append(
                "  peak RSS per process: "
                + ", ".join(f"{k} {_mb(v)}" for k, v in sorted(peaks.items()))
            )
    return "\n".join(lines)
