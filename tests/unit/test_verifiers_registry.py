"""The registry's prepared verifiers (what the ingest uses): config parsed once, expired secrets
ignored, and no input — for any scheme — raising anything but VerificationError."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.models import SigningSecret
from interlink.ingress.verifiers import (
    SCHEMES,
    SourceVerifier,
    VerificationError,
    generate_secret,
    hmac_scheme,
    prepare,
    standard_webhooks,
    stripe_scheme,
    validate_config,
    validate_secret,
)

NOW = 1_700_000_000.0
TS = int(NOW)
BODY = b'{"type":"booking.created"}'
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_WHSEC = "whsec_" + base64.b64encode(bytes(range(50, 82))).decode()


def sw_headers(secret: str) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(TS),
        "webhook-signature": standard_webhooks.sign(secret, "msg_1", TS, BODY),
    }


def signed_request(name: str, secret: str) -> dict[str, str]:
    """Headers that scheme ``name`` accepts for BODY at NOW with ``secret``."""
    if name == "standard_webhooks":
        return sw_headers(secret)
    if name == "stripe":
        return {"stripe-signature": stripe_scheme.sign(secret, TS, BODY)}
    if name == "github":
        return {
            "x-hub-signature-256": hmac_scheme.sign_hmac(secret, BODY, hmac_scheme.GITHUB.as_dict())
        }
    if name == "shopify":
        cfg = hmac_scheme.SHOPIFY.as_dict()
        return {"x-shopify-hmac-sha256": hmac_scheme.sign_hmac(secret, BODY, cfg)}
    assert name == "hmac"
    return {"x-signature": hmac_scheme.sign_hmac(secret, BODY, {})}


SECRETS = {
    "standard_webhooks": (WHSEC, OLD_WHSEC),
    "stripe": ("whsec_new_one", "whsec_old_one"),
    "github": ("new-secret", "old-secret"),
    "shopify": ("shpss_new", "shpss_old"),
    "hmac": ("new-secret", "old-secret"),
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_prepared_verifier_honours_expiry(name: str) -> None:
    new, old = SECRETS[name]
    held = (SigningSecret(old, expires_at=NOW + 60), SigningSecret(new))
    verify = prepare(name, validate_config(name, {}, [old, new]), held, 300)
    verify(BODY, signed_request(name, new), NOW)
    verify(BODY, signed_request(name, old), NOW)  # still within its grace period
    verify(BODY, signed_request(name, old), NOW + 59.9)
    with pytest.raises(VerificationError, match="no signature matched"):
        verify(BODY, signed_request(name, old), NOW + 60)  # from its expiry on, never again
    verify(BODY, signed_request(name, new), NOW + 60)


def test_every_secret_expired_is_said_so() -> None:
    verify = prepare("github", {}, (SigningSecret("s", expires_at=NOW),), 300)
    with pytest.raises(VerificationError, match="every signing secret of this source has expired"):
        verify(BODY, signed_request("github", "s"), NOW)


def test_nan_clock_fails_closed_on_expiry() -> None:
    assert not SigningSecret("s", expires_at=NOW).live(float("nan"))


def test_invalid_stored_config_refuses_instead_of_raising_at_ingest() -> None:
    for name, config in (("hmac", {"algorithm": "md5"}), ("gone", {}), ("stripe", {"x": 1})):
        verify = prepare(name, config, (SigningSecret("whsec_x"),), 300)
        with pytest.raises(VerificationError, match="source verifier config is invalid"):
            verify(BODY, {}, NOW)


def test_config_is_parsed_once_per_prepared_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    parse = hmac_scheme.parse_config
    headers = signed_request("hmac", "k")

    def counting(config: object) -> hmac_scheme.HmacConfig:
        nonlocal calls
        calls += 1
        return parse(config)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac_scheme, "parse_config", counting)
    verify = prepare("hmac", {}, (SigningSecret("k"),), 300)
    for _ in range(5):
        verify(BODY, headers, NOW)
    assert calls == 1


def test_none_scheme() -> None:
    prepare("none", {}, (), 0)(b"\xff", {}, float("nan"))
    with pytest.raises(ValueError, match="verifier 'none' takes no secrets"):
        validate_secret("none", "x")


def test_secret_count_is_bounded() -> None:
    with pytest.raises(ValueError, match="at most 10 secrets; got 11"):
        validate_config("github", {}, [f"s{i}" for i in range(11)])


@pytest.mark.parametrize("name", ["standard_webhooks", "github", "hmac"])
def test_generated_secrets_are_valid(name: str) -> None:
    validate_secret(name, generate_secret(name))


# --- properties: every scheme, the path the ingest takes ----------------------------------------

HEADER_NAMES = st.sampled_from(
    [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "stripe-signature",
        "x-hub-signature-256",
        "x-shopify-hmac-sha256",
        "x-signature",
    ]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=100),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.builds(lambda v, b: f"{v},{b}", st.sampled_from(["v1", "v1a"]), st.text(max_size=90)),
    st.builds(lambda t, s: f"t={t},v1={s}", st.integers(0, 10**12), st.text(max_size=70)),
    st.text(max_size=70).map(lambda s: "sha256=" + s),
)
SECRET_VALUES = st.one_of(
    st.text(max_size=60),
    st.sampled_from([WHSEC, "whsec_abc", "whpk_" + "A" * 43 + "=", "whsk_" + "A" * 43 + "="]),
)


@given(
    name=st.sampled_from(sorted(SCHEMES)),
    body=st.binary(max_size=300),
    headers=st.dictionaries(HEADER_NAMES | st.text(max_size=30), HEADER_VALUES, max_size=6),
    secrets=st.lists(
        st.builds(
            SigningSecret,
            SECRET_VALUES,
            st.none() | st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=4,
    ),
    tolerance=st.integers(min_value=-(10**20), max_value=10**20),
    now=st.floats(),
)
def test_no_input_makes_any_verifier_raise_anything_else(
    name: str,
    body: bytes,
    headers: dict[str, str],
    secrets: list[SigningSecret],
    tolerance: int,
    now: float,
) -> None:
    verify: SourceVerifier = prepare(name, {}, secrets, tolerance)
    with contextlib.suppress(VerificationError):
        verify(body, headers, now)
