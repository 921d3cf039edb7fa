"""Where the time goes: py-spy samples of the system under test during its fixed-rate step.

``python -m bench.run --profile DIR`` records every process of each system with ``py-spy record
--format raw`` (collapsed stacks, one line per distinct stack with its sample count) while the
fixed-rate step runs, and writes next to each record a summary: the functions with the most
samples on top of the stack (self) and anywhere in it (inclusive). py-spy is not a dependency of
the benchmark: ``pip install py-spy`` first (it needs ptrace, which root has).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path

TOP = 25


class Recorder:
    """py-spy attached to ``pids`` for ``seconds``; :meth:`finish` waits and summarizes."""

    def __init__(self, directory: Path, name: str, pids: list[int], seconds: float) -> None:
        exe = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        if exe is None:
            raise RuntimeError("--profile needs py-spy on PATH: pip install py-spy")
        directory.mkdir(parents=True, exist_ok=True)
        self.outputs: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        for pid in pids:
            out = directory / f"{name}-{pid}.txt"
            self.outputs.append(out)
            self._procs.append(
                subprocess.Popen(
                    [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                     "--rate", "100", "--format", "raw", "--subprocesses", "--gil",
                     "--output", str(out)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip

    def finish(self) -> list[Path]:
        summaries = []
        for proc, out in zip(self._procs, self.outputs, strict=True):
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out.exists():
                summary = out.with_suffix(".summary.txt")
                summary.write_text(summarize(out))
                summaries.append(summary)
        return summaries


def _package(frame: str) -> str:
    """``"f (aiohttp/client.py:12)"`` → ``aiohttp``; Interlink's own code by subpackage."""
    where = frame.rpartition("(")[2].rstrip(")")
    parts = where.split(":")[0].split("/")
    if parts[0] == "interlink" and len(parts) > 2:
        return "interlink." + parts[1]
    return parts[0].removesuffix(".py") or "?"


def summarize(path: Path, top: int = TOP) -> str:
    """Where the samples of a raw py-spy file (taken with ``--gil``: Python holding the GIL, i.e.
    the process's Python CPU time) went: by package and function of the top frame (self), and
    Interlink's functions anywhere in the stack (inclusive)."""
    self_counts: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    processes: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        if frames[0].startswith("process "):
            processes[frames[0][:100]] += n
            frames = frames[1:]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        self_counts[frames[-1]] += n
        packages[_package(frames[-1])] += n
        # Inclusive per function, not per line: "f (x.py:12)" and "f (x.py:40)" are one.
        for frame in {f.rpartition(":")[0] + ")" for f in frames}:
            if "(interlink/" in frame or "(bench/" in frame:
                inclusive[frame] += n
    # Frames on (nearly) every stack, such as the CLI entry point, say nothing.
    inclusive = collections.Counter({f: n for f, n in inclusive.items() if n < 0.9 * total})
    lines = [f"{path.name}: {total} samples"]
    for title, counter in (
        ("by process", processes),
        ("self, by package", packages),
        ("self, by function (top of the stack)", self_counts),
        ("inclusive, the system's own functions", inclusive),
    ):
        lines.append(f"\n{title}:")
        for frame, n in counter.most_common(top):
            lines.append(f"  {n / max(total, 1):6.1%}  {frame}")
    return "\n".join(lines) + "\n"
