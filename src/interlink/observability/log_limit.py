"""How many lines one subject (an endpoint) may write to the log per interval.

A dead endpoint fails every attempt; logging each would bury every other line. Each key gets
at most ``lines`` lines per ``interval`` seconds (a window that starts with its first line);
what is held back is counted and reported on the key's next line after the window ends, as
``suppressed``. Pure: time is passed in, nothing is written here.
"""

from __future__ import annotations

import msgspec


class Verdict(msgspec.Struct, frozen=True):
    emit: bool
    suppressed: int = 0  # lines held back in the key's previous window, to report with this one


class _Window(msgspec.Struct):
    started: float
    emitted: int
    suppressed: int


class LogLimiter:
    def __init__(self, lines: int = 10, interval: float = 60.0, max_keys: int = 10_000) -> None:
        if lines < 1 or interval <= 0:
            raise ValueError("lines must be at least 1 and interval positive")
        self.lines = lines
        self.interval = interval
        self.max_keys = max_keys
        self._windows: dict[str, _Window] = {}

    def check(self, key: str, now: float) -> Verdict:
        """Whether a line about ``key`` is written at ``now``; counts it either way."""
        window = self._windows.get(key)
        if window is None or now - window.started >= self.interval:
            carried = 0 if window is None else window.suppressed
            if window is None and len(self._windows) >= self.max_keys:
                self._forget_idle(now)
            self._windows[key] = _Window(started=now, emitted=1, suppressed=0)
            return Verdict(True, carried)
        if window.emitted < self.lines:
            window.emitted += 1
            return Verdict(True)
        window.suppressed += 1
        return Verdict(False)

    def _forget_idle(self, now: float) -> None:
        # Bounded memory with many endpoints: drop keys whose window ended (their suppressed
        # count is lost, as a count only ever is for an endpoint that went quiet).
        for key in [k for k, w in self._windows.items() if now - w.started >= self.interval]:
            del self._windows[key]
        if len(self._windows) >= self.max_keys:
            oldest = min(self._windows, key=lambda k: self._windows[k].started)
            del self._windows[oldest]
