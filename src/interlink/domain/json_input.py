"""The one decoder of JSON that comes from outside: partners' webhooks and API clients' bodies.

msgspec decodes recursively in C, guarded only by Python's recursion limit, so how deep a body may
nest would depend on how deep the caller's stack already is (about 980 levels from the ingest
route, fewer from the API) and exceeding it raises ``RecursionError``; a body that is not UTF-8
raises ``UnicodeDecodeError``. Both are the sender's fault, so both become :class:`InvalidJson`
here, with a fixed depth limit checked before msgspec sees the body.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import msgspec

# Deeper than any partner's payload we know of (tens of levels), far below the recursion limit.
MAX_DEPTH = 128

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Each bracket becomes its step in depth: +1 for an opener, -1 (255) for a closer.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class InvalidJson(ValueError):
    """The body is not JSON Interlink accepts; the message says what is wrong and where."""


def depth(body: bytes) -> int:
    """How deep the body's arrays and objects nest (0 for a scalar), ignoring brackets in text.

    Malformed JSON gets an approximate answer; the decoder refuses it anyway.
    """
    # Escapes first (a backslash pair, then an escaped quote), so every quote left delimits a
    # string: what lies between the odd and even quotes is text.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    steps = outside.translate(_STEPS, _NOT_BRACKETS)
    # As signed bytes the steps are 1 and -1: their running sum is the depth at each bracket.
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def decode(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``body``; :class:`InvalidJson` for anything Interlink refuses."""
    # Cheap first: a body with few brackets cannot nest deeply (most webhooks).
    if body.count(b"[") + body.count(b"{") > max_depth and depth(body) > max_depth:
        raise InvalidJson(f"JSON is nested more than {max_depth} levels deep")
    try:
        return msgspec.json.decode(body)
    except UnicodeDecodeError:
        raise InvalidJson(f"the body is not valid UTF-8 ({_utf8_error(body)})") from None
    except RecursionError:  # cannot happen below MAX_DEPTH; a refusal all the same
        raise InvalidJson("JSON is nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise InvalidJson(_malformed(str(exc))) from None


def _malformed(message: str) -> str:
    if message == "Input data was truncated":
        return "JSON is malformed: the body ends before the JSON does"
    return message if message.startswith("JSON is malformed") else f"JSON is malformed: {message}"


def _utf8_error(body: bytes) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:  # where, in the whole body (msgspec's offset is a string's)
        return f"byte {exc.start}: {exc.reason}"
    return "a string is not UTF-8"
