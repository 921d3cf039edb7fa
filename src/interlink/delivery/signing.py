"""Signing outbound deliveries with Standard Webhooks headers, so receivers can use any of the
spec's libraries to verify us."""

from __future__ import annotations

from interlink.ingress.verifiers import standard_webhooks


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers for ``body``.

    ``msg_id`` must stay the same across retries of one message: receivers deduplicate on it.
    Raises ValueError if ``secret`` is not a valid ``whsec_`` secret.
    """
    return {
        standard_webhooks.ID_HEADER: msg_id,
        standard_webhooks.TIMESTAMP_HEADER: str(timestamp),
        standard_webhooks.SIGNATURE_HEADER: standard_webhooks.sign(secret, msg_id, timestamp, body),
    }
