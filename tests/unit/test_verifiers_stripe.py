"""The Stripe scheme, against the `stripe` package: headers it generates are accepted, and on
tampered, wrong-secret and stale requests both refuse. Future timestamps: we refuse, Stripe does
not (it checks one side only)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.ingress.verifiers import VerificationError, generate_secret, get_verifier
from interlink.ingress.verifiers import validate_config as validate
from interlink.ingress.verifiers.stripe_scheme import MAX_ENTRIES, sign

SECRET = "whsec_test_secret_7d8f0a2b"
OTHER_SECRET = "whsec_other_secret_1c9e44"
NOW = 1_700_000_000.0
TS = int(NOW)
BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1"}}}'


def stripe_header(body: bytes = BODY, secret: str = SECRET, timestamp: int = TS) -> str:
    """The header as Stripe's own library computes it."""
    header: str = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return header


def stripe_accepts(body: bytes, header: str, secret: str = SECRET) -> bool:
    """Stripe's verdict: the check ``stripe.Webhook.construct_event`` runs before it parses the
    event (reads the real clock), with the same default tolerance."""
    try:
        stripe.WebhookSignature.verify_header(
            body, header, secret, tolerance=stripe.Webhook.DEFAULT_TOLERANCE
        )
    except stripe.SignatureVerificationError:
        return False
    return True


def verify(
    body: bytes,
    header: str | None,
    secrets: Sequence[str] = (SECRET,),
    *,
    tolerance: int = 300,
    now: float = NOW,
    extra: Mapping[str, str] | None = None,
) -> None:
    headers = dict(extra or {})
    if header is not None:
        headers["stripe-signature"] = header
    get_verifier("stripe")(body, headers, secrets, {}, tolerance, now)


def reject(body: bytes, header: str | None, secrets: Sequence[str] = (SECRET,), **kw: float) -> str:
    with pytest.raises(VerificationError) as info:
        verify(body, header, secrets, **kw)  # type: ignore[arg-type]
    return str(info.value)


def ours_accepts(body: bytes, header: str, secret: str = SECRET, now: float | None = None) -> bool:
    try:
        verify(body, header, [secret], now=time.time() if now is None else now)
    except VerificationError:
        return False
    return True


# --- agreement with Stripe's library -------------------------------------------------------------


def test_accepts_header_generated_by_stripe() -> None:
    verify(BODY, stripe_header())
    assert sign(SECRET, TS, BODY) == stripe_header()


def test_stripe_accepts_our_signature() -> None:
    timestamp = int(time.time())
    event = stripe.Webhook.construct_event(BODY, sign(SECRET, timestamp, BODY), SECRET)
    assert event.id == "evt_1"


def test_same_verdicts_as_stripe_on_tampered_wrong_secret_and_stale() -> None:
    now = int(time.time())
    fresh = stripe_header(timestamp=now)
    cases = {
        "valid": (BODY, fresh, SECRET, True),
        "tampered": (BODY.replace(b"in_1", b"in_2"), fresh, SECRET, False),
        "wrong secret": (BODY, fresh, OTHER_SECRET, False),
        "stale": (BODY, stripe_header(timestamp=now - 400), SECRET, False),
        "v1 missing": (BODY, f"t={now}", SECRET, False),
        "only v0": (BODY, fresh.replace("v1=", "v0="), SECRET, False),
        "no t": (BODY, fresh.split(",", 1)[1], SECRET, False),
        "junk": (BODY, "garbage", SECRET, False),
    }
    for name, (body, header, secret, expected) in cases.items():
        assert stripe_accepts(body, header, secret) is expected, name
        assert ours_accepts(body, header, secret) is expected, name


def test_future_timestamp_refused_by_us_though_stripe_accepts_it() -> None:
    header = stripe_header(timestamp=int(time.time()) + 400)
    assert stripe_accepts(BODY, header)
    assert not ours_accepts(BODY, header)


def test_several_v1_entries_and_v0_while_stripe_rolls_the_secret() -> None:
    old = stripe_header(secret=OTHER_SECRET).split(",")[1]
    new = stripe_header().split(",")[1]
    v0 = "v0=" + "0" * 64
    for header in (f"t={TS},{old},{new}", f"t={TS},{new},{old},{v0}", f"t={TS},{v0},{new}"):
        verify(BODY, header)
    assert reject(BODY, f"t={TS},{old},{v0}") == "no signature matched"


def test_secret_used_as_is_not_base64_decoded() -> None:
    # A secret that happens to be valid base64 after the prefix must still key the HMAC with its
    # literal bytes, as Stripe does.
    secret = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    verify(BODY, stripe_header(secret=secret), [secret])


def test_secret_rotation() -> None:
    verify(BODY, stripe_header(secret=OTHER_SECRET), [SECRET, OTHER_SECRET])


@given(
    body=st.text(max_size=200),
    secret=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
    ),
    offset=st.integers(min_value=-1000, max_value=290),
    sign_with_other=st.booleans(),
    tamper=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_differential_against_stripe(
    body: str, secret: str, offset: int, sign_with_other: bool, tamper: bool
) -> None:
    # Past and present timestamps only (Stripe does not check the future), kept 10 s clear of
    # the tolerance edge, so the real clock moving between the two checks cannot split them.
    if -310 <= offset <= -290:
        offset = -320
    secret = "whsec_" + secret
    raw = body.encode()
    header = stripe_header(
        raw, OTHER_SECRET if sign_with_other else secret, int(time.time()) + offset
    )
    if tamper:
        raw += b" "
    assert ours_accepts(raw, header, secret) is stripe_accepts(raw, header, secret)


# --- rejections ----------------------------------------------------------------------------------


def test_rejects_tampered_body_and_wrong_secret() -> None:
    assert reject(BODY + b"\n", stripe_header()) == "no signature matched"
    assert reject(BODY, stripe_header(secret=OTHER_SECRET)) == "no signature matched"


def test_rejects_stale_and_future_two_sided() -> None:
    assert reject(BODY, stripe_header(timestamp=TS - 301)) == (
        "timestamp is 301 s old; tolerance is 300 s"
    )
    assert reject(BODY, stripe_header(timestamp=TS + 301)) == (
        "timestamp is 301 s in the future; tolerance is 300 s"
    )
    verify(BODY, stripe_header(timestamp=TS - 300))
    verify(BODY, stripe_header(timestamp=TS + 300))


def test_rejects_rewritten_timestamp() -> None:
    signature = stripe_header(timestamp=TS - 3600).split(",")[1]
    assert reject(BODY, f"t={TS},{signature}") == "no signature matched"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing header 'stripe-signature'"),
        ("", "missing header 'stripe-signature'"),
        ("v1=abc", "malformed header 'stripe-signature': no timestamp (t=...)"),
        (f"t={TS}", "header 'stripe-signature' has no v1 signature"),
        (f"t={TS},v0=abc", "header 'stripe-signature' has no v1 signature"),
        ("t=soon,v1=abc", "malformed header 'stripe-signature': expected integer unix seconds"),
        (f"t=-{TS},v1=abc", "malformed header 'stripe-signature': expected integer unix seconds"),
        (f"t={TS},v1=" + "A" * 64, "no signature matched"),
        (f"t={TS},v1=\udc80", "no signature matched"),
        (
            f"t={TS}," + ",".join(["v1=a"] * MAX_ENTRIES),
            f"malformed header 'stripe-signature': more than {MAX_ENTRIES} entries",
        ),
    ],
)
def test_rejects_malformed_headers(header: str | None, problem: str) -> None:
    assert reject(BODY, header) == problem


def test_uppercase_hex_is_not_stripes_and_not_accepted() -> None:
    header = stripe_header()
    t, v1 = header.split(",")
    shouted = f"{t},{v1.upper().replace('V1=', 'v1=')}"
    assert not stripe_accepts(BODY, shouted.replace(str(TS), str(int(time.time()))))
    assert reject(BODY, shouted) == "no signature matched"


def test_no_usable_secret() -> None:
    assert reject(BODY, stripe_header(), []) == "source has no usable signing secret"
    assert reject(BODY, stripe_header(), [""]) == "source has no usable signing secret"


# --- secrets entering a source -------------------------------------------------------------------


def test_validate_config() -> None:
    assert validate("stripe", {}, [SECRET, OTHER_SECRET]) == {}
    with pytest.raises(ValueError, match=r"secrets\[0\]: not a Stripe endpoint secret"):
        validate("stripe", {}, ["sk_live_abc"])
    with pytest.raises(ValueError, match=r"secrets\[0\]: not a Stripe endpoint secret"):
        validate("stripe", {}, ["whsec_"])
    with pytest.raises(ValueError, match="verifier 'stripe' takes no config"):
        validate("stripe", {"tolerance": 10}, [SECRET])
    with pytest.raises(ValueError, match="needs at least one secret"):
        validate("stripe", {}, [])


def test_stripe_issues_the_secret_so_none_is_generated() -> None:
    with pytest.raises(ValueError, match="checks the signing secret the partner issues"):
        generate_secret("stripe")


# --- properties ----------------------------------------------------------------------------------


@given(
    body=st.binary(max_size=200),
    header=st.one_of(
        st.text(max_size=120),
        st.builds(
            lambda t, sigs: f"t={t}," + ",".join(sigs),
            st.text(max_size=20) | st.integers().map(str),
            st.lists(st.text(max_size=70).map(lambda s: "v1=" + s), max_size=4),
        ),
    ),
    secrets=st.lists(st.text(max_size=40), max_size=3),
    tolerance=st.integers(min_value=-(10**20), max_value=10**20),
    now=st.floats(),
)
def test_arbitrary_input_only_ever_raises_verification_error(
    body: bytes, header: str, secrets: list[str], tolerance: int, now: float
) -> None:
    with contextlib.suppress(VerificationError):
        verify(body, header, secrets, tolerance=tolerance, now=now)
