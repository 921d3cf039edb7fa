"""Stripe's webhook signatures (https://docs.stripe.com/webhooks#verify-manually).

Stripe sends ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``; each ``v1``
is the hex HMAC-SHA256 of ``f"{t}.".encode() + body`` keyed with the endpoint's ``whsec_...``
secret exactly as Stripe shows it — its UTF-8 bytes, prefix included, not base64-decoded as in
Standard Webhooks. Several ``v1`` entries appear while Stripe rolls a secret; ``v0`` is a test-mode
scheme that never verifies live events, so it is ignored like any unknown entry.

Unlike Stripe's own library, a timestamp too far in the future is refused as well as a stale one:
a sender with a skewed clock could otherwise mint requests that stay replayable for longer.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from interlink.ingress.verifiers import VerificationError, check_timestamp, require_header

HEADER = "stripe-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a credential)
SCHEME = "v1"
# A valid header carries a handful of entries; refusing more bounds the work hostile input costs.
MAX_ENTRIES = 20


def validate_secret(secret: str) -> None:
    """ValueError unless ``secret`` looks like an endpoint secret Stripe issued (``whsec_...``)."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) == len(SECRET_PREFIX):
        raise ValueError(f"not a Stripe endpoint secret: expected {SECRET_PREFIX!r} and more")


def _hex_digest(secret: str, timestamp: int, body: bytes) -> str:
    # surrogatepass: stored secrets are arbitrary str and this must never raise on the verify
    # path; a secret Stripe issued is ASCII, so the bytes are the same as Stripe's.
    mac = hmac.new(secret.encode("utf-8", "surrogatepass"), f"{timestamp:d}.".encode(), "sha256")
    mac.update(body)
    return mac.hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Stripe-Signature`` value Stripe would send for ``body`` at ``timestamp``."""
    return f"t={timestamp:d},{SCHEME}={_hex_digest(secret, timestamp, body)}"


def _parse(header: str, value: str) -> tuple[str, list[str]]:
    """The timestamp as sent and the ``v1`` signatures; entries of other schemes are skipped."""
    items = value.split(",")
    if len(items) > MAX_ENTRIES:
        raise VerificationError(f"malformed header {header!r}: more than {MAX_ENTRIES} entries")
    timestamp: str | None = None
    signatures: list[str] = []
    for item in items:
        key, _, entry = item.partition("=")
        # Like Stripe's library: the first t counts, and items it cannot read are passed over.
        if key == "t" and timestamp is None:
            timestamp = entry
        elif key == SCHEME:
            signatures.append(entry)
    if timestamp is None:
        raise VerificationError(f"malformed header {header!r}: no timestamp (t=...)")
    if not signatures:
        raise VerificationError(f"header {header!r} has no {SCHEME} signature")
    return timestamp, signatures


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    config: Mapping[str, object],
    tolerance: int,
    now: float,
) -> None:
    """Raise VerificationError unless one of ``secrets`` produced one of the ``v1`` signatures."""
    header, value = require_header(headers, HEADER)
    sent_timestamp, signatures = _parse(header, value)
    timestamp = check_timestamp(sent_timestamp, header, tolerance, now)
    # Compared as text, as Stripe does: its signatures are lowercase hex, and bytes of anything
    # else simply do not match. Encoding cannot fail (surrogatepass), whatever the header held.
    received = [s.encode("utf-8", "surrogatepass") for s in signatures]
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise VerificationError("source has no usable signing secret")
    for secret in usable:
        expected = _hex_digest(secret, timestamp, body).encode("ascii")
        for candidate in received:
            if hmac.compare_digest(expected, candidate):
                return
    raise VerificationError("no signature matched")
