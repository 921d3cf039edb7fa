"""Transformations: a subscription's JSONata expression reshapes an event's data for its
destination (pure).

JSONata (``jsonata-python``, a port of the reference implementation kept in step with it) is
declarative and sandboxed: no I/O, no imports, nothing but the functions of its own library.
What it can still do, recurse through its own lambdas, is bounded by the library's time box
(TIME_LIMIT_MS, checked at every evaluation step, and MAX_RECURSION), and the output by
MAX_OUTPUT_BYTES. The input is the event's data; ``$event`` holds the rest of the event
(type, source, key, headers, occurred_at). A null or missing result sends ``null``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jsonata
import msgspec
from jsonata import functions

MAX_CHARS = 4096
MAX_OUTPUT_BYTES = 1024 * 1024  # the event's own cap
TIME_LIMIT_MS = 50
MAX_RECURSION = 200  # evaluation depth; Python's own limit is 1,000 frames


class TransformError(ValueError):
    """A transformation that does not compile (at save) or fails on an event (an attempt)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} at character {position}")
        self.position = position


MAX_PAD = 65_536  # $pad is the one builtin that makes a string of any length in one step


class _Bounded(functions.Functions):  # type: ignore[misc]
    @staticmethod
    def pad(string: str | None, width: int | None, char: str | None = None) -> str | None:
        if width is not None and abs(width) > MAX_PAD:
            raise TransformError(f"$pad to {width} characters; the limit is {MAX_PAD}")
        padded: str | None = functions.Functions.pad(string, width, char)
        return padded


class Result(msgspec.Struct, frozen=True):
    body: bytes  # the JSON that replaces the event's data in what is sent
    micros: int  # how long it took


def compile_transform(text: str) -> Any:
    """The compiled expression (a ``jsonata.Jsonata``); TransformError names what is wrong."""
    if not text.strip():
        raise TransformError("is empty")
    if len(text) > MAX_CHARS:
        raise TransformError(f"is {len(text)} characters long; the limit is {MAX_CHARS}")
    try:
        expression = jsonata.Jsonata(text)
    except jsonata.JException as exc:
        raise TransformError(f"does not compile: {exc}", _position(exc)) from None
    except RecursionError:
        raise TransformError("nests too deeply to compile") from None
    except Exception as exc:  # the parser's own slips must be a 422, not a 500
        raise TransformError(f"does not compile: {type(exc).__name__}: {exc}") from None
    # Bound before any use, and by name, so ``$p := $pad`` gets the bounded one too.
    expression.register_function(
        "pad", jsonata.Jsonata.JNativeFunction("pad", "<s-ns?:s>", _Bounded, "pad")
    )
    return expression


def _position(exc: Any) -> int | None:
    location = getattr(exc, "location", None)
    return location if isinstance(location, int) and location >= 0 else None


def apply(expression: Any, data: object, event: Mapping[str, object]) -> Result:
    """Runs a compiled transformation; TransformError with the reason when it fails."""
    started = time.perf_counter()
    try:
        # The library's time box counts from when it was set, not from each evaluation: set
        # afresh, so a transformation compiled long ago (cached) gets its full time.
        expression.environment.set_runtime_bounds(TIME_LIMIT_MS, MAX_RECURSION)
        out = expression.evaluate(data, {"event": dict(event)})
    except TransformError as exc:
        raise TransformError(f"transformation failed: {exc}") from None
    except jsonata.JException as exc:
        raise TransformError(f"transformation failed: {_reason(exc)}") from None
    except RecursionError:
        raise TransformError("transformation failed: recursion too deep") from None
    except Exception as exc:  # the library's own bugs must not stop the dispatcher
        raise TransformError(f"transformation failed: {type(exc).__name__}: {exc}") from None
    try:
        body = msgspec.json.encode(out)
    except (TypeError, OverflowError) as exc:
        raise TransformError(f"transformation made something JSON cannot hold: {exc}") from None
    if len(body) > MAX_OUTPUT_BYTES:
        raise TransformError(
            f"transformation output is {len(body)} bytes; the limit is {MAX_OUTPUT_BYTES}"
        )
    return Result(body, int((time.perf_counter() - started) * 1e6))


def _reason(exc: Any) -> str:
    if getattr(exc, "error", None) == "D1012" or "timeout" in str(exc).lower():
        return f"took over {TIME_LIMIT_MS} ms"
    if getattr(exc, "error", None) == "U1001" or "stack" in str(exc).lower():
        return f"recursed deeper than {MAX_RECURSION}"
    return str(exc)[:300]
