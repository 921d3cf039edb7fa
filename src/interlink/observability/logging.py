"""structlog set-up: JSON lines off a terminal, readable lines on one; secrets redacted.

Log lines carry the ids of what they are about (tenant, source, event, endpoint, delivery) when
the code handling it has bound them with ``bind_ids`` (structlog contextvars: per asyncio task,
so concurrent requests and attempts never see each other's ids).

Redaction is by allow-list: the keys in ``SAFE_KEYS`` print as they are; any other key whose
name suggests a credential prints ``[redacted]``; and in every string value, keys included,
whatever looks like one of our secrets (``whsec_…`` signing secrets, ``ik_…`` API keys, a
bearer token) is replaced wherever it appears, so an error message that quotes one cannot
leak it either.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final

import structlog

REDACTED: Final = "[redacted]"

# The ids a line may be about; what bind_ids accepts.
ID_KEYS: Final = frozenset({"tenant_id", "source_id", "event_id", "endpoint_id", "delivery_id"})

# Keys whose values are known to be safe to print as they are (after the value scrub). A key
# not here is printed too, unless its name suggests a credential.
SAFE_KEYS: Final = ID_KEYS | frozenset(
    {
        # structlog's own
        "event",
        "level",
        "timestamp",
        "logger",
        "exception",
        # what Interlink logs
        "attempt",
        "count",
        "detail",
        "duration_ms",
        "error",
        "idempotency_key",
        "latency_ms",
        "outcome",
        "reason",
        "status",
        "status_code",
        "subscription_id",
        "type",
        "verifier",
        "expected",
        "observed",
        "ratio",
        "window_seconds",
    }
)

# Name fragments of credentials. Matched against the lower-cased key (compact: "apikey" too).
_SECRET_WORDS: Final = (
    "secret",
    "password",
    "passwd",
    "token",
    "authorization",
    "auth",
    "api_key",
    "apikey",
    "signature",
    "cookie",
    "credential",
    "private",
    "session",
)

# Our secrets' shapes: Standard Webhooks secrets (whsec_ + base64, and Stripe's whsec_…) and
# Ed25519 secret keys (whsk_ + base64), API keys (ik_… and ik_admin_…, token_urlsafe), and a
# bearer token however it got into a message. Public keys (whpk_) are not secrets.
_SECRET_VALUE: Final = re.compile(
    r"wh(?:sec|sk)_[A-Za-z0-9+/=_-]+"
    # No word boundary before ik_: "x_ik_…" is still a key. A false match only hides text.
    r"|ik_[A-Za-z0-9_-]{6,}"
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]+"
)


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS) or lowered.endswith(("_key", "key"))


def scrub(value: str) -> str:
    """``value`` with anything shaped like one of our secrets replaced."""
    return _SECRET_VALUE.sub(REDACTED, value)


def _clean(key: str, value: Any, depth: int = 0) -> Any:
    if key not in SAFE_KEYS and _secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if depth >= 4:  # deeper structures are not logged by Interlink; do not walk them
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(key, v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The structlog processor: runs after exceptions are formatted, so tracebacks are cleaned."""
    for key, value in event_dict.items():
        event_dict[key] = _clean(key, value)
    return event_dict


@contextlib.contextmanager
def bind_ids(**ids: str | None) -> Iterator[None]:
    """Binds the ids of what this task is handling to every line it logs, until the block ends.

    Only ``ID_KEYS`` are accepted (a typo fails loudly); None values are left out.
    """
    unknown = ids.keys() - ID_KEYS
    if unknown:
        raise TypeError(f"bind_ids takes only {sorted(ID_KEYS)}, not {sorted(unknown)}")
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


def configure(log_format: str = "auto", level: str = "info", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
