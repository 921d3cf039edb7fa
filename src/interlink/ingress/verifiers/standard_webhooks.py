"""The Standard Webhooks signature scheme (https://www.standardwebhooks.com): ``v1`` HMAC-SHA256
and ``v1a`` Ed25519.

The sender signs ``f"{webhook-id}.{webhook-timestamp}.".encode() + body``: for ``v1`` with the key
that is the base64 part of a ``whsec_...`` secret, for ``v1a`` with an Ed25519 secret key
(``whsk_`` + base64 of its 32-byte seed), verified with the public key (``whpk_`` + base64 of its
32 bytes). It sends ``webhook-signature: v1,<base64> v1a,<base64>...``; any one valid entry will
do. Several signatures let a sender rotate its secret; several configured secrets let us rotate
ours, and a source may hold ``whsec_`` secrets and ``whpk_`` keys side by side.
Svix sends the same scheme under ``svix-*`` header names, which are accepted as aliases.
"""

from __future__ import annotations

import binascii
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from interlink.ingress.verifiers import (
    VerificationError,
    check_timestamp,
    decode_base64,
    require_header,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a credential)
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_KEY_PREFIX = "whsk_"  # noqa: S105 (a format marker, not a credential)
_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
# Each v1a entry costs an Ed25519 verification per public key; a sender rotating keys sends two
# or three, so more than this is refused rather than checked.
MAX_V1A_SIGNATURES = 10
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


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def decode_public_key(public_key: str) -> Ed25519PublicKey:
    """The Ed25519 key in a ``whpk_`` public key; ValueError unless it is base64 of 32 bytes."""
    if not public_key.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"not a Standard Webhooks public key: expected {PUBLIC_KEY_PREFIX!r}")
    raw = decode_base64(public_key.removeprefix(PUBLIC_KEY_PREFIX))
    if len(raw) != _ED25519_KEY_BYTES:
        raise ValueError(f"public key is {len(raw)} bytes; Ed25519 public keys are 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def decode_secret_key(secret_key: str) -> Ed25519PrivateKey:
    """The Ed25519 key in a ``whsk_`` secret key; ValueError if it is not one.

    The spec only says "base64"; libraries serialize either the 32-byte seed (RFC 8032) or
    libsodium's 64 bytes of seed and public key, so both are read, the latter checked.
    """
    if not secret_key.startswith(SECRET_KEY_PREFIX):
        raise ValueError(f"not a Standard Webhooks secret key: expected {SECRET_KEY_PREFIX!r}")
    raw = decode_base64(secret_key.removeprefix(SECRET_KEY_PREFIX))
    if len(raw) not in (_ED25519_KEY_BYTES, 2 * _ED25519_KEY_BYTES):
        raise ValueError(f"secret key is {len(raw)} bytes; expected a 32-byte Ed25519 seed")
    key = Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_KEY_BYTES])
    if len(raw) > _ED25519_KEY_BYTES and raw[_ED25519_KEY_BYTES:] != _public_bytes(key):
        raise ValueError("secret key's public half does not match its seed")
    return key


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_of(secret_key: str) -> str:
    """The ``whpk_`` public key that verifies what ``secret_key`` signs."""
    return PUBLIC_KEY_PREFIX + _b64(_public_bytes(decode_secret_key(secret_key)))


def generate_key_pair() -> tuple[str, str]:
    """A fresh ``(whsk_ secret key, whpk_ public key)`` pair."""
    key = Ed25519PrivateKey.generate()
    return SECRET_KEY_PREFIX + _b64(key.private_bytes_raw()), PUBLIC_KEY_PREFIX + _b64(
        _public_bytes(key)
    )


def validate_verifying_key(value: str) -> None:
    """ValueError unless ``value`` can verify requests: a ``whsec_`` secret or a ``whpk_`` key.

    A ``whsk_`` secret key is refused by name: a receiver needs only the public half, and holding
    the secret half would let anyone who reads our database sign as the partner.
    """
    if value.startswith(SECRET_KEY_PREFIX):
        raise ValueError(
            f"a {SECRET_KEY_PREFIX!r} secret key signs; give the source the partner's "
            f"{PUBLIC_KEY_PREFIX!r} public key instead"
        )
    if value.startswith(PUBLIC_KEY_PREFIX):
        decode_public_key(value)
        return
    validate_secret(value)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` entry for an outbound message: ``"v1,<base64>"`` for a
    ``whsec_`` secret, ``"v1a,<base64>"`` for a ``whsk_`` Ed25519 secret key.

    Raises ValueError if ``secret`` is neither.
    """
    signed_prefix = f"{msg_id}.{timestamp:d}.".encode()
    if secret.startswith(SECRET_KEY_PREFIX):
        return "v1a," + _b64(decode_secret_key(secret).sign(signed_prefix + body))
    return "v1," + _b64(_digest(decode_secret(secret), signed_prefix, body))


def _parse_signatures(header: str, value: str) -> tuple[list[bytes], list[bytes]]:
    """The decoded ``v1`` and ``v1a`` signatures in a signature header; other versions are
    skipped, so a sender may add schemes we do not know alongside one we do."""
    v1: list[bytes] = []
    v1a: list[bytes] = []
    # Only a space separates entries per the spec; empty items from doubled spaces are harmless.
    for entry in value.split(" "):
        if not entry:
            continue
        version, comma, encoded = entry.partition(",")
        if not comma or not version or not encoded:
            raise VerificationError(
                f"malformed header {header!r}: expected space-separated 'v1,<base64>' entries"
            )
        if version == "v1":
            found = v1
        elif version == "v1a":
            found = v1a
        else:
            continue
        try:
            found.append(decode_base64(encoded))
        except ValueError:
            raise VerificationError(
                f"malformed header {header!r}: a {version} signature is not valid base64"
            ) from None
    if not v1 and not v1a:
        raise VerificationError(f"header {header!r} has no v1 or v1a signature")
    if len(v1a) > MAX_V1A_SIGNATURES:
        raise VerificationError(
            f"malformed header {header!r}: more than {MAX_V1A_SIGNATURES} v1a signatures"
        )
    return v1, v1a


def _verifying_keys(secrets: Sequence[str]) -> tuple[list[bytes], list[Ed25519PublicKey]]:
    hmac_keys: list[bytes] = []
    public_keys: list[Ed25519PublicKey] = []
    for secret in secrets:
        # A stored secret that does not decode is a config fault, not the sender's; skipping it
        # keeps rotation working with the remaining secrets.
        try:
            if secret.startswith(PUBLIC_KEY_PREFIX):
                public_keys.append(decode_public_key(secret))
            elif not secret.startswith(SECRET_KEY_PREFIX):
                hmac_keys.append(decode_secret(secret))
        except ValueError:
            continue
    return hmac_keys, public_keys


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    config: Mapping[str, object],
    tolerance: int,
    now: float,
) -> None:
    """Raise VerificationError unless one of ``secrets`` produced one of the signatures: a
    ``whsec_`` secret a ``v1`` one, a ``whpk_`` key's secret half a ``v1a`` one."""
    id_header, msg_id = require_header(headers, ID_HEADER, "svix-id")
    ts_header, timestamp = require_header(headers, TIMESTAMP_HEADER, "svix-timestamp")
    sig_header, signature = require_header(headers, SIGNATURE_HEADER, "svix-signature")

    # The timestamp is checked before the (costlier) signatures; it is only trusted once a
    # signature matches, since every signature covers it.
    check_timestamp(timestamp, ts_header, tolerance, now)
    v1, v1a = _parse_signatures(sig_header, signature)
    try:
        # The timestamp as sent, not re-rendered from the parsed int: it is what was signed.
        signed_prefix = f"{msg_id}.{timestamp}.".encode()
    except UnicodeEncodeError:
        raise VerificationError(f"malformed header {id_header!r}: not encodable as UTF-8") from None

    hmac_keys, public_keys = _verifying_keys(secrets)
    if not hmac_keys and not public_keys:
        raise VerificationError("source has no usable signing secret")

    if v1:
        for key in hmac_keys:
            expected = _digest(key, signed_prefix, body)
            for candidate in v1:
                if hmac.compare_digest(expected, candidate):
                    return
    # Ed25519 verification needs the message in one buffer; only built when it can matter.
    candidates = [c for c in v1a if len(c) == _ED25519_SIGNATURE_BYTES]
    if candidates and public_keys:
        message = signed_prefix + body
        for public_key in public_keys:
            for candidate in candidates:
                try:
                    public_key.verify(candidate, message)
                except InvalidSignature:
                    continue
                return
    raise VerificationError("no signature matched")
