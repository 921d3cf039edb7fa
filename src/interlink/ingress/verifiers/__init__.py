"""Webhook signature verifiers, chosen per source by name.

Each verifier is a pure function of the raw body, the (lowercased) headers, the source's secrets
and config, the tolerance and the caller's clock. Keeping I/O and the clock out makes them trivial
to test and lets a stored request be re-judged against any ``now``.

``SCHEMES`` is the registry: per name, how to parse the config (once per source, see
``prepare``), check secrets and generate one. ``standard_webhooks`` (``v1`` and ``v1a``),
``stripe``, ``github``, ``shopify``, the configurable ``hmac`` and ``none``.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from interlink.domain.models import SigningSecret
from interlink.domain.secret_rotation import MAX_SECRETS, live_values


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


# A verifier with its config already parsed: (body, headers, secrets, tolerance, now).
Check = Callable[[bytes, Mapping[str, str], Sequence[str], int, float], None]


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


def _accept_all(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: int, now: float
) -> None:
    """The ``none`` scheme: for sources that are trusted by network placement, not signatures."""
    return None


# Imported here, not at the top, because the scheme modules import VerificationError and the
# helpers above from this package; by this point those names already exist.
from interlink.ingress.verifiers import (  # noqa: E402
    hmac_scheme,
    standard_webhooks,
    stripe_scheme,
)


@dataclass(frozen=True, slots=True)
class Scheme:
    """What the registry knows of one signature scheme."""

    # The config parsed into a ready verifier; ValueError if it is invalid.
    prepare: Callable[[Mapping[str, object]], Check]
    # The config as it is stored: validated, with defaults filled in; ValueError if invalid.
    normalize: Callable[[Mapping[str, object]], dict[str, object]]
    # ValueError (not naming the secret) if it cannot be one; None: the scheme takes no secrets.
    validate_secret: Callable[[str], None] | None
    # A fresh secret; None where only the partner can issue it (Stripe, Shopify).
    generate_secret: Callable[[], str] | None


def _without_config(verify: Verifier) -> Check:
    def check(
        body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: int, now: float
    ) -> None:
        verify(body, headers, secrets, {}, tolerance, now)

    return check


def _fixed(
    name: str,
    check: Check,
    validate_secret: Callable[[str], None] | None,
    generate_secret: Callable[[], str] | None,
) -> Scheme:
    """A scheme whose behaviour is fully named by ``name``: it takes no config."""

    def normalize(config: Mapping[str, object]) -> dict[str, object]:
        if config:
            raise ValueError(f"verifier {name!r} takes no config; got keys {_key_list(config)}")
        return {}

    def prepare(config: Mapping[str, object]) -> Check:
        normalize(config)
        return check

    return Scheme(prepare, normalize, validate_secret, generate_secret)


def _prepare_hmac(config: Mapping[str, object]) -> Check:
    return hmac_scheme.checker(hmac_scheme.parse_config(config))


def _normalize_hmac(config: Mapping[str, object]) -> dict[str, object]:
    return hmac_scheme.parse_config(config).as_dict()


SCHEMES: dict[str, Scheme] = {
    "standard_webhooks": _fixed(
        "standard_webhooks",
        _without_config(standard_webhooks.verify),
        standard_webhooks.validate_verifying_key,
        standard_webhooks.generate_secret,
    ),
    "stripe": _fixed(
        "stripe", _without_config(stripe_scheme.verify), stripe_scheme.validate_secret, None
    ),
    # GitHub and Shopify are the generic HMAC code with their conventions fixed.
    "github": _fixed(
        "github",
        hmac_scheme.checker(hmac_scheme.GITHUB),
        hmac_scheme.validate_secret,
        hmac_scheme.generate_secret,
    ),
    "shopify": _fixed(
        "shopify", hmac_scheme.checker(hmac_scheme.SHOPIFY), hmac_scheme.validate_secret, None
    ),
    "hmac": Scheme(
        _prepare_hmac, _normalize_hmac, hmac_scheme.validate_secret, hmac_scheme.generate_secret
    ),
    "none": _fixed("none", _accept_all, None, None),
}


def _known_names() -> str:
    return ", ".join(sorted(SCHEMES))


def get_scheme(name: str) -> Scheme:
    """The scheme registered as ``name``; ValueError naming the known schemes otherwise."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown verifier {name!r}; known verifiers: {_known_names()}") from None


def _unprepared(name: str, prepare: Callable[[Mapping[str, object]], Check]) -> Verifier:
    def verify(
        body: bytes,
        headers: Mapping[str, str],
        secrets: Sequence[str],
        config: Mapping[str, object],
        tolerance: int,
        now: float,
    ) -> None:
        try:
            check = prepare(config)
        except ValueError as exc:
            raise VerificationError(f"source verifier config is invalid: {exc}") from None
        check(body, headers, secrets, tolerance, now)

    verify.__qualname__ = verify.__name__ = f"verify_{name}"
    return verify


# The same verifiers taking the config per call: for one-off checks and tests. The ingest path
# uses ``prepare`` instead, which parses the config once per source.
VERIFIERS: dict[str, Verifier] = {
    name: _unprepared(name, scheme.prepare) for name, scheme in SCHEMES.items()
}


def get_verifier(name: str) -> Verifier:
    """The verifier registered as ``name``; ValueError naming the known schemes otherwise."""
    get_scheme(name)
    return VERIFIERS[name]


def _refusing(reason: str) -> Check:
    def check(
        body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: int, now: float
    ) -> None:
        raise VerificationError(reason)

    return check


@dataclass(frozen=True, slots=True)
class SourceVerifier:
    """One source's verifier: its scheme with the config parsed, its secrets and tolerance.

    Built once per cached source, so a request pays for the signature check and nothing else.
    """

    check: Check
    secrets: tuple[SigningSecret, ...]
    tolerance: int

    def __call__(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Return if the request is authentic at ``now``, else raise VerificationError."""
        live = live_values(self.secrets, now)
        if self.secrets and not live:
            raise VerificationError("every signing secret of this source has expired")
        self.check(body, headers, live, self.tolerance, now)


def prepare(
    name: str, config: Mapping[str, object], secrets: Sequence[SigningSecret], tolerance: int
) -> SourceVerifier:
    """The verifier for a source with this scheme, config, secrets and tolerance.

    A stored config that no longer parses (or an unknown scheme) gives a verifier that refuses
    every request with the reason, rather than an error at ingest.
    """
    try:
        check = get_scheme(name).prepare(config)
    except ValueError as exc:
        check = _refusing(f"source verifier config is invalid: {exc}")
    return SourceVerifier(check, tuple(secrets), tolerance)


def validate_config(
    name: str, config: Mapping[str, object], secrets: Sequence[str]
) -> dict[str, object]:
    """Check a source's scheme, config and secrets as submitted over the API.

    Returns the config normalized with defaults filled in, ready to store. Raises ValueError with a
    message fit for the API client; messages point at secrets by index and never echo them.
    """
    scheme = get_scheme(name)
    if not isinstance(config, Mapping):
        raise ValueError(f"verifier config must be an object, got {type(config).__name__}")
    # A bare string is a Sequence too; accepting it would treat each character as a secret.
    if isinstance(secrets, str | bytes) or not isinstance(secrets, Sequence):
        raise ValueError("secrets must be a list of strings")
    for index, secret in enumerate(secrets):
        if not isinstance(secret, str):
            raise ValueError(f"secrets[{index}] must be a string, got {type(secret).__name__}")

    normalized = scheme.normalize(config)
    if scheme.validate_secret is None:
        if secrets:
            raise ValueError(f"verifier {name!r} takes no secrets")
        return normalized
    if not secrets:
        raise ValueError(f"verifier {name!r} needs at least one secret")
    if len(secrets) > MAX_SECRETS:
        raise ValueError(f"a source holds at most {MAX_SECRETS} secrets; got {len(secrets)}")
    for index, secret in enumerate(secrets):
        try:
            scheme.validate_secret(secret)
        except ValueError as exc:
            raise ValueError(f"secrets[{index}]: {exc}") from None
    return normalized


def validate_secret(name: str, secret: str) -> None:
    """ValueError (never echoing ``secret``) unless it can be a secret of scheme ``name``."""
    scheme = get_scheme(name)
    if scheme.validate_secret is None:
        raise ValueError(f"verifier {name!r} takes no secrets")
    scheme.validate_secret(secret)


def generate_secret(name: str) -> str:
    """A fresh random secret in the format the scheme expects; ValueError where the scheme takes
    no secrets or only the partner can issue one."""
    scheme = get_scheme(name)
    if scheme.validate_secret is None:
        raise ValueError(f"verifier {name!r} takes no secrets")
    if scheme.generate_secret is None:
        raise ValueError(
            f"verifier {name!r} checks the signing secret the partner issues; pass that secret"
        )
    return scheme.generate_secret()


def _key_list(config: Mapping[str, object]) -> str:
    return ", ".join(repr(key) for key in sorted(map(str, config)))


__all__ = [
    "SCHEMES",
    "VERIFIERS",
    "Check",
    "Scheme",
    "SourceVerifier",
    "VerificationError",
    "Verifier",
    "check_timestamp",
    "decode_base64",
    "generate_secret",
    "get_scheme",
    "get_verifier",
    "prepare",
    "require_header",
    "validate_config",
    "validate_secret",
]
