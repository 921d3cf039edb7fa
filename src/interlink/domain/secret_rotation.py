"""Secret rotation: a source holds several secrets and accepts any that has not expired.

Rotating adds the new secret and, optionally, gives the ones already held an expiry, so the
partner can switch over while both verify. Pure functions of the secrets and the caller's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from interlink.domain.models import SigningSecret

# Each live secret costs a signature check on every request that matches none of the others;
# rotation needs two or three at a time, so a small bound keeps the worst case cheap.
MAX_SECRETS = 10
# An endpoint signs every delivery with each of its live secrets: the current one and the ones
# still in their overlap. Rotating with no overlap always has room (it retires the others).
MAX_ENDPOINT_SECRETS = 3
DEFAULT_OVERLAP_SECONDS = 24 * 3600
MAX_OVERLAP_SECONDS = 7 * 24 * 3600


def live_values(secrets: Iterable[SigningSecret], now: float) -> tuple[str, ...]:
    """The values of the secrets that still verify at ``now``."""
    return tuple(secret.value for secret in secrets if secret.live(now))


def rotate(
    secrets: Sequence[SigningSecret],
    new: str,
    now: float,
    expire_others_at: float | None = None,
    limit: int = MAX_SECRETS,
) -> tuple[SigningSecret, ...]:
    """``secrets`` with ``new`` added, the rest expiring at ``expire_others_at`` at the latest and
    the expired dropped; ValueError if that would hold more than ``limit``.

    An expiry already earlier than ``expire_others_at`` is kept: rotating again must never bring
    a retiring secret back to life for longer.
    """
    kept: list[SigningSecret] = []
    for secret in secrets:
        if not secret.live(now):
            continue
        if secret.value == new:
            raise ValueError("the source already holds this secret")
        expires_at = secret.expires_at
        if expire_others_at is not None and (expires_at is None or expire_others_at < expires_at):
            expires_at = expire_others_at
        retiring = SigningSecret(secret.value, expires_at)
        # Expiring at once (``expire_others_at`` not after ``now``) is a plain replacement; it
        # also frees room when the source is full.
        if retiring.live(now):
            kept.append(retiring)
    if len(kept) + 1 > limit:
        raise ValueError(
            f"at most {limit} secrets can be live at once; rotate again once the retiring "
            "ones have expired, or end their overlap now (expire_current_in_seconds or "
            "overlap_seconds 0)"
        )
    return (*kept, SigningSecret(new))
