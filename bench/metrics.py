"""CPU and memory of process groups (sampled from /proc through psutil), and percentiles.

A group is a set of root processes and all their descendants (Celery's pool, uvicorn's workers).
CPU is user + system seconds, summed over the group; a process that exits keeps the CPU it was
last seen with. Memory is sampled every ``interval``: the peak RSS of each process, and the peak
of the group's sum of RSS and of PSS (RSS counts pages a forked pool shares once per process; PSS
splits them, so the PSS sum is the group's real footprint).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass
class _Proc:
    handle: psutil.Process
    label: str
    cpu: float = 0.0
    peak_rss: int = 0


@dataclass
class GroupUsage:
    cpu_seconds: float
    peak_rss: int  # bytes, max over samples of the group's summed RSS
    peak_pss: int  # bytes, same for PSS
    per_process_peak_rss: dict[str, int] = field(default_factory=dict)
    per_process_cpu: dict[str, float] = field(default_factory=dict)


class _Group:
    def __init__(self, roots: Callable[[], Sequence[int]]) -> None:
        self.roots = roots
        self.procs: dict[int, _Proc] = {}
        self.peak_rss = 0
        self.peak_pss = 0

    def sample(self, memory: bool) -> None:
        handles: list[psutil.Process] = []
        for pid in self.roots():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                handles.append(root)
                handles.extend(root.children(recursive=True))
        rss_total = pss_total = 0
        for handle in handles:
            entry = self.procs.get(handle.pid)
            try:
                if entry is None or entry.handle.create_time() != handle.create_time():
                    entry = _Proc(handle, f"{handle.name()}[{handle.pid}]")
                    self.procs[handle.pid] = entry
                times = entry.handle.cpu_times()
                entry.cpu = times.user + times.system
                if memory:
                    info = entry.handle.memory_full_info()
                    entry.peak_rss = max(entry.peak_rss, info.rss)
                    rss_total += info.rss
                    pss_total += getattr(info, "pss", info.rss)
            except psutil.Error:
                continue
        if memory:
            self.peak_rss = max(self.peak_rss, rss_total)
            self.peak_pss = max(self.peak_pss, pss_total)

    def usage(self) -> GroupUsage:
        return GroupUsage(
            cpu_seconds=sum(p.cpu for p in self.procs.values()),
            peak_rss=self.peak_rss,
            peak_pss=self.peak_pss,
            per_process_peak_rss={p.label: p.peak_rss for p in self.procs.values()},
            per_process_cpu={p.label: p.cpu for p in self.procs.values()},
        )

    def reset_peaks(self) -> None:
        self.peak_rss = self.peak_pss = 0
        for p in self.procs.values():
            p.peak_rss = 0


class Sampler:
    """Samples named process groups on a background thread until closed."""

    def __init__(self, interval: float = 0.5) -> None:
        self._interval = interval
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()

    def watch(self, name: str, roots: Callable[[], Sequence[int]]) -> None:
        with self._lock:
            self._groups[name] = _Group(roots)
            self._groups[name].sample(memory=True)

    def forget(self, name: str) -> None:
        with self._lock:
            self._groups.pop(name, None)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                for group in self._groups.values():
                    group.sample(memory=True)

    def usage(self) -> dict[str, GroupUsage]:
        """A fresh sample of CPU (memory peaks as sampled so far), per group."""
        with self._lock:
            for group in self._groups.values():
                group.sample(memory=False)
            return {name: g.usage() for name, g in self._groups.items()}

    def reset_peaks(self) -> None:
        with self._lock:
            for group in self._groups.values():
                group.reset_peaks()
                group.sample(memory=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpu_delta(before: dict[str, GroupUsage], after: dict[str, GroupUsage]) -> dict[str, float]:
    return {
        name: after[name].cpu_seconds - before[name].cpu_seconds for name in after if name in before
    }


def cpu_delta_per_process(before: GroupUsage, after: GroupUsage) -> dict[str, float]:
    return {
        label: cpu - before.per_process_cpu.get(label, 0.0)
        for label, cpu in after.per_process_cpu.items()
    }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
