"""The Standard Webhooks signature scheme (https://www.standardwebhooks.com), ``v1`` HMAC-SHA256.

The sender signs ``f"{webhook-id}.{webhook-timestamp}.".encode() + body`` with the key that is the
base64 part of a ``whsec_...`` secret, and sends ``webhook-signature: v1,<base64> v1,<base64>...``.
Several signatures let a sender rotate its secret; several configured secrets let us rotate ours.
Svix sends the same scheme under ``svix-*`` header names, which are accepted as aliases.
"""

from __future__ import annotations

import binascii
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence

from interlink.ingress.verifiers import (
    VerificationError,
    check_timestamp,
    decode_base64,
    require_header,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a credential)
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
_GENERATED_KEY_BYTES = 32

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; ValueError if it is not valid base64 or empty.

    The prefix is optional here, like in the reference libraries, so keys pasted without it still
    work; ``validate_secret`` is the strict check for secrets entering the system.
    """
    key = decode_base64(secret.removeprefix(SECRET_PREFIX))
    if not key:
        raise ValueError("secret decodes to an empty key")
    return key


def validate_secret(secret: str) -> None:
    """ValueError unless ``secret`` is ``whsec_`` + base64 of 24..64 bytes (the spec's range)."""
    expected = (
        f"expected {SECRET_PREFIX!r} followed by base64 of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
    )
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"not a Standard Webhooks secret: {expected}")
    try:
        key = decode_secret(secret)
    except ValueError:
        raise ValueError(f"secret is not valid base64: {expected}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"secret key is {len(key)} bytes: {expected}")


def generate_secret() -> str:
    return SECRET_PREFIX + binascii.b2a_base64(
        _secrets.token_bytes(_GENERATED_KEY_BYTES), newline=False
    ).decode("ascii")


def _digest(key: bytes, signed_prefix: bytes, body: bytes) -> bytes:
    # Feeding the body separately avoids copying it into one concatenated buffer; bodies can be
    # megabytes while the prefix is a few dozen bytes.
    mac = hmac.new(key, signed_prefix, "sha256")
    mac.update(body)
    return mac.digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``"v1,<base64>"``) for an outbound message.

    Raises ValueError if ``secret`` is not a valid secret.
    """
    digest = _digest(decode_secret(secret), f"{msg_id}.{timestamp:d}.".encode(), body)
    return "v1," + binascii.b2a_base64(digest, newline=False).decode("ascii")


def _parse_signatures(header: str, value: str) -> list[bytes]:
    """The decoded ``v1`` signatures in a signature header; other versions are skipped."""
    signatures: list[bytes] = []
    # Only a space separates entries per the spec; empty items from doubled spaces are harmless.
    for entry in value.split(" "):
        if not entry:
            continue
        version, comma, encoded = entry.partition(",")
        if not comma or not version or not encoded:
            raise VerificationError(
                f"malformed header {header!r}: expected space-separated 'v1,<base64>' entries"
            )
        if version != "v1":
            continue
        try:
            signatures.append(decode_base64(encoded))
        except ValueError:
            raise VerificationError(
                f"malformed header {header!r}: a v1 signature is not valid base64"
            ) from None
    if not signatures:
        raise VerificationError(f"header {header!r} has no v1 signature")
    return signatures


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    config: Mapping[str, object],
    tolerance: int,
    now: float,
) -> None:
    """Raise VerificationError unless one of ``secrets`` produced one of the ``v1`` signatures."""
    id_header, msg_id = require_header(headers, ID_HEADER, "svix-id")
    ts_header, timestamp = require_header(headers, TIMESTAMP_HEADER, "svix-timestamp")
    sig_header, signature = require_header(headers, SIGNATURE_HEADER, "svix-signature")

    # The timestamp is checked before the (costlier) HMAC; it is only trusted once the signature
    # matches, since the signature covers it.
    check_timestamp(timestamp, ts_header, tolerance, now)
    received = _parse_signatures(sig_header, signature)
    try:
        # The timestamp as sent, not re-rendered from the parsed int: it is what was signed.
        signed_prefix = f"{msg_id}.{timestamp}.".encode()
    except UnicodeEncodeError:
        raise VerificationError(f"malformed header {id_header!r}: not encodable as UTF-8") from None

    keys: list[bytes] = []
    for secret in secrets:
        # A stored secret that does not decode is a config fault, not the sender's; skipping it
        # keeps rotation working with the remaining secrets.
        try:
            keys.append(decode_secret(secret))
        except ValueError:
            continue
    if not keys:
        raise VerificationError("source has no usable signing secret")

    for key in keys:
        expected = _digest(key, signed_prefix, body)
        for candidate in received:
            if hmac.compare_digest(expected, candidate):
                return
    raise VerificationError("no signature matched")
