"""Signing outbound deliveries with Standard Webhooks headers, so receivers can use any of the
spec's libraries to verify us."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from interlink.domain.models import SigningSecret
from interlink.domain.secret_rotation import live_values
from interlink.ingress.verifiers import standard_webhooks


def signature_headers(
    secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers for ``body``,
    signed with each of ``secret`` (several during a rotation's overlap: one ``v1,`` entry per
    ``whsec_`` secret, one ``v1a,`` entry per ``whsk_`` key, space-separated as the spec says).

    ``msg_id`` must stay the same across retries of one message: receivers deduplicate on it.
    Raises ValueError if a secret is neither a valid ``whsec_`` secret nor a ``whsk_`` key.
    """
    secrets = (secret,) if isinstance(secret, str) else secret
    return {
        standard_webhooks.ID_HEADER: msg_id,
        standard_webhooks.TIMESTAMP_HEADER: str(timestamp),
        standard_webhooks.SIGNATURE_HEADER: " ".join(
            standard_webhooks.sign(s, msg_id, timestamp, body) for s in secrets
        ),
    }


OpenSecrets = Callable[[str], Sequence[SigningSecret]]


class _Opened:
    """An endpoint's secrets as decrypted, with the ones that sign until the first expiry (so
    an attempt usually reuses them, and computes them again only after a secret retired)."""

    __slots__ = ("secrets", "signing", "until")

    def __init__(self, secrets: tuple[SigningSecret, ...], now: float) -> None:
        self.secrets = secrets
        self.refresh(now)

    def refresh(self, now: float) -> None:
        # The newest never expires; the retiring ones sign until their overlap ends.
        self.signing = live_values(self.secrets, now) or (self.secrets[-1].value,)
        expiries = [s.expires_at for s in self.secrets if s.live(now) and s.expires_at]
        self.until = min(expiries, default=math.inf)


class Signer:
    """Signs a delivery with its endpoint's secrets as stored (sealed): the dispatcher's claim
    carries the ciphertext, and each ciphertext is decrypted once, then kept, so an attempt pays
    a dictionary lookup, not a decryption. A rotation stores a new ciphertext, which is a new
    entry: nothing here needs to be told."""

    _MAX_ENTRIES = 10_000

    def __init__(self, open_secrets: OpenSecrets) -> None:
        self._open = open_secrets
        self._opened: dict[str, _Opened] = {}
        self.decryptions = 0  # for the benchmark and tests: cache fills

    def signing(self, stored: str, now: float) -> tuple[str, ...]:
        """The secrets that sign at ``now`` for this stored value."""
        opened = self._opened.get(stored)
        if opened is None:
            opened = _Opened(tuple(self._open(stored)), now)
            self.decryptions += 1
            if len(self._opened) >= self._MAX_ENTRIES:
                self._opened.clear()
            self._opened[stored] = opened
        elif now >= opened.until:
            opened.refresh(now)
        return opened.signing

    def __call__(self, stored: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return signature_headers(self.signing(stored, timestamp), msg_id, timestamp, body)
