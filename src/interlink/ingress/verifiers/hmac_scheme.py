"""A configurable HMAC scheme covering the common ad-hoc partner conventions.

The named ``github`` and ``shopify`` schemes are fixed configurations of it (``GITHUB``,
``SHOPIFY``). Examples::

    GitHub:  {"header": "x-hub-signature-256", "prefix": "sha256=", "encoding": "hex"}
    Shopify: {"header": "x-shopify-hmac-sha256", "encoding": "base64"}
    Slack:   {"header": "x-slack-signature", "prefix": "v0=",
              "template": "v0:{timestamp}:{body}", "timestamp_header": "x-slack-request-timestamp"}

The signed bytes are ``template`` with ``{timestamp}`` replaced by the timestamp header's value as
sent and ``{body}`` by the raw body; the secret's UTF-8 bytes are the key.
"""

from __future__ import annotations

import binascii
import hmac
import re
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from interlink.ingress.verifiers import (
    Check,
    VerificationError,
    check_timestamp,
    decode_base64,
    require_header,
)

ALGORITHMS = ("sha256", "sha512")
ENCODINGS = ("hex", "base64")
BODY_FIELD = "{body}"
TIMESTAMP_FIELD = "{timestamp}"

# RFC 9110 token characters, lowercased: header names are matched against lowercased keys.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


@dataclass(frozen=True, slots=True)
class HmacConfig:
    header: str = "x-signature"
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""
    template: str = BODY_FIELD
    timestamp_header: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_KEYS = frozenset(HmacConfig.__dataclass_fields__)

# GitHub signs the raw body with the webhook's secret: ``X-Hub-Signature-256: sha256=<hex>``. The
# older SHA-1 ``X-Hub-Signature`` is deliberately not a fallback: GitHub sends both, so a request
# without the SHA-256 header is not from GitHub.
GITHUB: HmacConfig = HmacConfig(header="x-hub-signature-256", prefix="sha256=")
# Shopify signs the raw body with the app's client secret: ``X-Shopify-Hmac-SHA256: <base64>``.
SHOPIFY: HmacConfig = HmacConfig(header="x-shopify-hmac-sha256", encoding="base64")


def _header_name(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"hmac config {key!r} must be a string, got {type(value).__name__}")
    name = value.strip().lower()
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"hmac config {key!r} is not a valid header name: {value!r}")
    return name


def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"hmac config {key!r} must be one of {', '.join(choices)}; got {value!r}")
    return value.lower()


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"hmac config {key!r} must be a string, got {type(value).__name__}")
    return value


def parse_config(config: Mapping[str, object]) -> HmacConfig:
    """Validate and normalize an hmac config (defaults for missing keys); ValueError if invalid."""
    unknown = sorted(str(key) for key in config if key not in _KEYS)
    if unknown:
        raise ValueError(
            f"unknown hmac config key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(_KEYS))}"
        )
    defaults = HmacConfig()
    header = _header_name("header", config.get("header", defaults.header))
    algorithm = _choice("algorithm", config.get("algorithm", defaults.algorithm), ALGORITHMS)
    encoding = _choice("encoding", config.get("encoding", defaults.encoding), ENCODINGS)
    prefix = _string("prefix", config.get("prefix", defaults.prefix))
    template = _string("template", config.get("template", defaults.template))
    raw_ts_header = config.get("timestamp_header")
    timestamp_header = (
        None if raw_ts_header is None else _header_name("timestamp_header", raw_ts_header)
    )

    # Exactly one body: without it the signature would not protect the payload at all.
    if template.count(BODY_FIELD) != 1:
        raise ValueError(f"hmac config 'template' must contain {BODY_FIELD} exactly once")
    has_timestamp = TIMESTAMP_FIELD in template
    if has_timestamp and timestamp_header is None:
        raise ValueError(
            f"hmac config 'template' uses {TIMESTAMP_FIELD} but 'timestamp_header' is not set"
        )
    # A timestamp outside the signed bytes could be rewritten by a replaying attacker, so the
    # tolerance check would give false comfort.
    if timestamp_header is not None and not has_timestamp:
        raise ValueError(
            f"hmac config 'timestamp_header' is set but 'template' does not sign {TIMESTAMP_FIELD}"
        )
    if timestamp_header is not None and timestamp_header == header:
        raise ValueError("hmac config 'timestamp_header' must differ from 'header'")
    return HmacConfig(
        header=header,
        algorithm=algorithm,
        encoding=encoding,
        prefix=prefix,
        template=template,
        timestamp_header=timestamp_header,
    )


def generate_secret() -> str:
    return _secrets.token_urlsafe(32)


def validate_secret(secret: str) -> None:
    """ValueError if ``secret`` cannot be an HMAC key: an empty key is public knowledge."""
    if not secret:
        raise ValueError("must not be empty")


def _encode(text: str) -> bytes:
    # surrogatepass: config and secrets are arbitrary str, and encoding must never raise on the
    # verify path; signer and verifier use the same rule, so they still agree.
    return text.encode("utf-8", "surrogatepass")


def _framing(template: str, timestamp: str | None) -> tuple[bytes, bytes]:
    """The bytes signed before and after the body."""
    before, _, after = template.partition(BODY_FIELD)
    if timestamp is not None:
        before = before.replace(TIMESTAMP_FIELD, timestamp)
        after = after.replace(TIMESTAMP_FIELD, timestamp)
    return _encode(before), _encode(after)


def _digest(key: bytes, algorithm: str, before: bytes, body: bytes, after: bytes) -> bytes:
    # Feeding the parts separately avoids copying a possibly large body into one buffer.
    mac = hmac.new(key, before, algorithm)
    mac.update(body)
    mac.update(after)
    return mac.digest()


def sign_hmac(
    secret: str, body: bytes, config: Mapping[str, object], timestamp: int | None = None
) -> str:
    """The signature header value a partner with this config would send for ``body``.

    ``timestamp`` is required when the template signs ``{timestamp}``. ValueError on a bad config.
    """
    cfg = parse_config(config)
    if TIMESTAMP_FIELD in cfg.template and timestamp is None:
        raise ValueError(f"this hmac config signs {TIMESTAMP_FIELD}; pass a timestamp")
    before, after = _framing(cfg.template, None if timestamp is None else f"{timestamp:d}")
    digest = _digest(_encode(secret), cfg.algorithm, before, body, after)
    if cfg.encoding == "hex":
        return cfg.prefix + digest.hex()
    return cfg.prefix + binascii.b2a_base64(digest, newline=False).decode("ascii")


def _decode_signature(header: str, encoded: str, encoding: str) -> bytes:
    try:
        if encoding == "hex":
            # a2b_hex is case-insensitive, so "ABCD" and "abcd" compare equal as bytes.
            return binascii.a2b_hex(encoded)
        return decode_base64(encoded)
    except (binascii.Error, ValueError):
        raise VerificationError(
            f"malformed header {header!r}: signature is not valid {encoding}"
        ) from None


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    config: Mapping[str, object],
    tolerance: int,
    now: float,
) -> None:
    """Raise VerificationError unless one of ``secrets`` produced the signature header."""
    try:
        cfg = parse_config(config)
    except ValueError as exc:
        raise VerificationError(f"source verifier config is invalid: {exc}") from None
    _verify(cfg, body, headers, secrets, tolerance, now)


def checker(cfg: HmacConfig) -> Check:
    """``verify`` bound to one parsed config, so a source's requests do not re-parse it."""

    def check(
        body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: int, now: float
    ) -> None:
        _verify(cfg, body, headers, secrets, tolerance, now)

    return check


def _verify(
    cfg: HmacConfig,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance: int,
    now: float,
) -> None:
    header, value = require_header(headers, cfg.header)
    timestamp: str | None = None
    if cfg.timestamp_header is not None:
        ts_header, timestamp = require_header(headers, cfg.timestamp_header)
        check_timestamp(timestamp, ts_header, tolerance, now)

    if not value.startswith(cfg.prefix):
        raise VerificationError(f"malformed header {header!r}: expected prefix {cfg.prefix!r}")
    received = _decode_signature(header, value[len(cfg.prefix) :], cfg.encoding)

    # Empty keys are skipped: an HMAC under a known (empty) key authenticates nothing.
    keys = [_encode(secret) for secret in secrets if secret]
    if not keys:
        raise VerificationError("source has no usable signing secret")
    before, after = _framing(cfg.template, timestamp)
    for key in keys:
        if hmac.compare_digest(_digest(key, cfg.algorithm, before, body, after), received):
            return
    raise VerificationError("no signature matched")
