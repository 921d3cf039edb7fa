"""Webhook signature verifiers, chosen per source by name.

Each verifier is a pure function of the raw body, the (lowercased) headers, the source's secrets
and config, the tolerance and the caller's clock. Keeping I/O and the clock out makes them trivial
to test and lets a stored request be re-judged against any ``now``.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Mapping, Sequence
from typing import Protocol


class VerificationError(Exception):
    """A request failed verification; ``str()`` says why and is safe to show to the sender.

    Messages never contain secrets or expected signatures: they would let a caller forge requests.
    """


class Verifier(Protocol):
    def __call__(
        self,
        body: bytes,
        headers: Mapping[str, str],
        secrets: Sequence[str],
        config: Mapping[str, object],
        tolerance: int,
        now: float,
    ) -> None:
        """Return if the request is authentic, else raise VerificationError (and nothing else)."""
        ...


# A timestamp this long is past the year 30 million; refusing it early keeps int->float
# conversion from overflowing and the arithmetic cheap for hostile input.
_MAX_TIMESTAMP_DIGITS = 18


def require_header(headers: Mapping[str, str], name: str, *aliases: str) -> tuple[str, str]:
    """The first non-empty header among ``name`` and ``aliases``, as ``(found_name, value)``.

    An empty value counts as missing: it can never carry a valid signature or timestamp.
    """
    for key in (name, *aliases):
        value = headers.get(key)
        if value:
            return key, value
    raise VerificationError(f"missing header {name!r}")


def check_timestamp(value: str, header: str, tolerance: int, now: float) -> int:
    """Parse integer unix seconds and enforce the tolerance on both sides of ``now``.

    Future timestamps are refused too: otherwise a sender with a skewed (or malicious) clock could
    mint requests that stay replayable long after they were captured.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_TIMESTAMP_DIGITS:
        raise VerificationError(f"malformed header {header!r}: expected integer unix seconds")
    timestamp = int(value)
    age = now - timestamp
    # Written so that a NaN clock fails closed rather than passing both comparisons.
    if -tolerance <= age <= tolerance:
        return timestamp
    if age > 0:
        raise VerificationError(
            f"timestamp is {_whole_seconds(age)} s old; tolerance is {tolerance} s"
        )
    raise VerificationError(
        f"timestamp is {_whole_seconds(-age)} s in the future; tolerance is {tolerance} s"
    )


def _whole_seconds(seconds: float) -> str:
    # Rounding up keeps the message consistent with the check: 300.4 s past a 300 s tolerance
    # must not read "300 s old".
    return str(math.ceil(seconds)) if math.isfinite(seconds) else str(seconds)


def decode_base64(value: str) -> bytes:
    """Decode standard base64, tolerating missing padding; ValueError on anything else.

    Strict about the alphabet (unlike ``base64.b64decode``'s default) so that junk is reported as
    malformed instead of silently decoding to some other bytes.
    """
    try:
        return binascii.a2b_base64(value + "=" * (-len(value) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def accept_all(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    config: Mapping[str, object],
    tolerance: int,
    now: float,
) -> None:
    """The ``none`` scheme: for sources that are trusted by network placement, not signatures."""
    return None


# Imported here, not at the top, because the scheme modules import VerificationError and the
# helpers above from this package; by this point those names already exist.
from interlink.ingress.verifiers import hmac_scheme, standard_webhooks  # noqa: E402

VERIFIERS: dict[str, Verifier] = {
    "standard_webhooks": standard_webhooks.verify,
    "hmac": hmac_scheme.verify,
    "none": accept_all,
}


def _known_names() -> str:
    return ", ".join(sorted(VERIFIERS))


def get_verifier(name: str) -> Verifier:
    """The verifier registered as ``name``; ValueError naming the known schemes otherwise."""
    try:
        return VERIFIERS[name]
    except KeyError:
        raise ValueError(f"unknown verifier {name!r}; known verifiers: {_known_names()}") from None


def validate_config(
    name: str, config: Mapping[str, object], secrets: Sequence[str]
) -> dict[str, object]:
    """Check a source's scheme, config and secrets as submitted over the API.

    Returns the config normalized with defaults filled in, ready to store. Raises ValueError with a
    message fit for the API client; messages point at secrets by index and never echo them.
    """
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; known verifiers: {_known_names()}")
    if not isinstance(config, Mapping):
        raise ValueError(f"verifier config must be an object, got {type(config).__name__}")
    # A bare string is a Sequence too; accepting it would treat each character as a secret.
    if isinstance(secrets, str | bytes) or not isinstance(secrets, Sequence):
        raise ValueError("secrets must be a list of strings")
    for index, secret in enumerate(secrets):
        if not isinstance(secret, str):
            raise ValueError(f"secrets[{index}] must be a string, got {type(secret).__name__}")

    if name == "none":
        if config:
            raise ValueError(f"verifier 'none' takes no config; got keys {_key_list(config)}")
        if secrets:
            raise ValueError("verifier 'none' takes no secrets")
        return {}

    if not secrets:
        raise ValueError(f"verifier {name!r} needs at least one secret")

    if name == "standard_webhooks":
        if config:
            raise ValueError(
                f"verifier 'standard_webhooks' takes no config; got keys {_key_list(config)}"
            )
        for index, secret in enumerate(secrets):
            try:
                standard_webhooks.validate_secret(secret)
            except ValueError as exc:
                raise ValueError(f"secrets[{index}]: {exc}") from None
        return {}

    normalized = hmac_scheme.parse_config(config).as_dict()
    for index, secret in enumerate(secrets):
        if not secret:
            raise ValueError(f"secrets[{index}] must not be empty")
    return normalized


def generate_secret(name: str) -> str:
    """A fresh random secret in the format the scheme expects."""
    if name == "standard_webhooks":
        return standard_webhooks.generate_secret()
    if name == "hmac":
        return hmac_scheme.generate_secret()
    if name == "none":
        raise ValueError("verifier 'none' takes no secrets")
    raise ValueError(f"unknown verifier {name!r}; known verifiers: {_known_names()}")


def _key_list(config: Mapping[str, object]) -> str:
    return ", ".join(repr(key) for key in sorted(map(str, config)))


__all__ = [
    "VERIFIERS",
    "VerificationError",
    "Verifier",
    "accept_all",
    "check_timestamp",
    "decode_base64",
    "generate_secret",
    "get_verifier",
    "require_header",
    "validate_config",
]
