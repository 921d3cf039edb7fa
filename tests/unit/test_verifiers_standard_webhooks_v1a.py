"""Standard Webhooks ``v1a``: Ed25519 signatures, checked against libsodium (PyNaCl), an
implementation independent of ours (cryptography/OpenSSL), and RFC 8032's published vector."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey, VerifyKey

from interlink.ingress.verifiers import VerificationError, get_verifier, validate_config
from interlink.ingress.verifiers.standard_webhooks import (
    MAX_V1A_SIGNATURES,
    decode_public_key,
    decode_secret_key,
    generate_key_pair,
    public_key_of,
    sign,
)

NOW = 1_700_000_000.0
TS = int(NOW)
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
BODY = b'{"type":"contact.created","data":{"id":"1f81eb52"}}'
HMAC_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()

# RFC 8032, section 7.1, TEST 1: the seed, its public key, and the signature of the empty message.
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def key_pair(seed: bytes) -> tuple[SigningKey, str, str]:
    """A libsodium signing key and its whsk_ / whpk_ serializations."""
    signing = SigningKey(seed)
    return signing, "whsk_" + b64(seed), "whpk_" + b64(bytes(signing.verify_key))


SIGNING, SECRET_KEY, PUBLIC_KEY = key_pair(bytes(range(32)))
OTHER_SIGNING, OTHER_SECRET_KEY, OTHER_PUBLIC_KEY = key_pair(bytes(range(100, 132)))


def libsodium_headers(
    signing: SigningKey = SIGNING, msg_id: str = MSG_ID, timestamp: int = TS, body: bytes = BODY
) -> dict[str, str]:
    """Headers as a partner signing with libsodium would send them."""
    signature = signing.sign(f"{msg_id}.{timestamp}.".encode() + body).signature
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1a," + b64(signature),
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str] = (PUBLIC_KEY,),
    *,
    tolerance: int = 300,
    now: float = NOW,
) -> None:
    get_verifier("standard_webhooks")(body, headers, secrets, {}, tolerance, now)


def reject(body: bytes, headers: Mapping[str, str], secrets: Sequence[str] = (PUBLIC_KEY,)) -> str:
    with pytest.raises(VerificationError) as info:
        verify(body, headers, secrets)
    return str(info.value)


# --- against independent implementations ---------------------------------------------------------


def test_rfc8032_vector_keys_and_signature() -> None:
    secret_key = "whsk_" + b64(RFC_SEED)
    assert public_key_of(secret_key) == "whpk_" + b64(RFC_PUBLIC)
    assert decode_secret_key(secret_key).sign(b"") == RFC_SIGNATURE
    decode_public_key("whpk_" + b64(RFC_PUBLIC)).verify(RFC_SIGNATURE, b"")


@pytest.mark.parametrize(
    "body",
    [BODY, b"", "caf\u00e9 \u2603".encode(), b"\x00\xff"],
    ids=["json", "empty", "utf8", "bin"],
)
def test_accepts_headers_signed_by_libsodium(body: bytes) -> None:
    verify(body, libsodium_headers(body=body))


def test_libsodium_accepts_our_signature() -> None:
    entry = sign(SECRET_KEY, MSG_ID, TS, BODY)
    assert entry.startswith("v1a,")
    signature = base64.b64decode(entry.removeprefix("v1a,"))
    VerifyKey(bytes(SIGNING.verify_key)).verify(f"{MSG_ID}.{TS}.".encode() + BODY, signature)
    # Ed25519 is deterministic: both implementations produce the same bytes.
    assert entry == libsodium_headers()["webhook-signature"]


def test_libsodium_64_byte_secret_key_form() -> None:
    # libsodium serializes a secret key as seed || public key.
    sodium_form = "whsk_" + b64(bytes(SIGNING) + bytes(SIGNING.verify_key))
    assert public_key_of(sodium_form) == PUBLIC_KEY
    assert sign(sodium_form, MSG_ID, TS, BODY) == sign(SECRET_KEY, MSG_ID, TS, BODY)
    mismatched = "whsk_" + b64(bytes(SIGNING) + bytes(OTHER_SIGNING.verify_key))
    with pytest.raises(ValueError, match="public half does not match"):
        decode_secret_key(mismatched)


def test_generated_key_pair_round_trips() -> None:
    secret_key, public_key = generate_key_pair()
    assert public_key_of(secret_key) == public_key
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": sign(secret_key, MSG_ID, TS, BODY),
    }
    verify(BODY, headers, [public_key])
    assert generate_key_pair()[0] != secret_key


def test_svix_header_names() -> None:
    headers = {k.replace("webhook-", "svix-"): v for k, v in libsodium_headers().items()}
    verify(BODY, headers)


# --- mixed and multiple signatures ---------------------------------------------------------------


def test_mixed_v1_and_v1a_any_valid_one_is_enough() -> None:
    v1 = sign(HMAC_SECRET, MSG_ID, TS, BODY)
    v1a = libsodium_headers()["webhook-signature"]
    wrong_v1a = libsodium_headers(OTHER_SIGNING)["webhook-signature"]
    for value in (f"{v1} {v1a}", f"{wrong_v1a} {v1a}", f"{v1a} v2,AAAA", f"{wrong_v1a} {v1}"):
        verify(BODY, libsodium_headers() | {"webhook-signature": value}, [HMAC_SECRET, PUBLIC_KEY])
    # Only the public key held: the v1 entry cannot match, the v1a one does.
    verify(BODY, libsodium_headers() | {"webhook-signature": f"{v1} {v1a}"}, [PUBLIC_KEY])
    # Only the HMAC secret held: a v1a entry alone proves nothing.
    headers = libsodium_headers() | {"webhook-signature": f"{wrong_v1a} {v1a}"}
    assert reject(BODY, headers, [HMAC_SECRET]) == "no signature matched"


def test_key_rotation_any_held_public_key() -> None:
    verify(BODY, libsodium_headers(OTHER_SIGNING), [PUBLIC_KEY, OTHER_PUBLIC_KEY])


# --- rejections ----------------------------------------------------------------------------------


def test_rejects_tampered_body() -> None:
    assert reject(BODY + b" ", libsodium_headers()) == "no signature matched"


def test_rejects_wrong_key() -> None:
    assert reject(BODY, libsodium_headers(OTHER_SIGNING)) == "no signature matched"


def test_rejects_changed_id_or_timestamp() -> None:
    assert reject(BODY, libsodium_headers() | {"webhook-id": "msg_x"}) == "no signature matched"
    replayed = libsodium_headers(timestamp=TS - 1000) | {"webhook-timestamp": str(TS)}
    assert reject(BODY, replayed) == "no signature matched"


def test_rejects_stale_and_future() -> None:
    assert reject(BODY, libsodium_headers(timestamp=TS - 301)) == (
        "timestamp is 301 s old; tolerance is 300 s"
    )
    assert reject(BODY, libsodium_headers(timestamp=TS + 301)) == (
        "timestamp is 301 s in the future; tolerance is 300 s"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("v1a,***", "malformed header 'webhook-signature': a v1a signature is not valid base64"),
        ("v1a", "malformed header 'webhook-signature': expected space-separated"),
        ("v1a," + b64(b"short"), "no signature matched"),
        ("v1a," + b64(bytes(64)), "no signature matched"),
        (
            " ".join(["v1a," + b64(bytes(64))] * (MAX_V1A_SIGNATURES + 1)),
            f"more than {MAX_V1A_SIGNATURES} v1a signatures",
        ),
    ],
)
def test_rejects_malformed_v1a(value: str, problem: str) -> None:
    assert problem in reject(BODY, libsodium_headers() | {"webhook-signature": value})


def test_held_secret_key_or_bad_public_key_is_skipped() -> None:
    # Not usable to verify: a whsk_ (refused on entry, see below), a truncated public key.
    assert reject(BODY, libsodium_headers(), [SECRET_KEY, "whpk_" + b64(b"x" * 31)]) == (
        "source has no usable signing secret"
    )
    verify(BODY, libsodium_headers(), ["whpk_***", PUBLIC_KEY])


# --- secrets entering a source -------------------------------------------------------------------


def test_validate_config_accepts_public_keys_and_hmac_secrets() -> None:
    assert validate_config("standard_webhooks", {}, [PUBLIC_KEY, HMAC_SECRET]) == {}


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (SECRET_KEY, "secret key signs; give the source the partner's 'whpk_' public key"),
        ("whpk_" + b64(b"k" * 31), "public key is 31 bytes"),
        ("whpk_%%%", "not valid base64"),
    ],
)
def test_validate_config_refuses_bad_keys(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        validate_config("standard_webhooks", {}, [secret])
    assert secret.removeprefix("whpk_").removeprefix("whsk_") not in str(info.value)


@pytest.mark.parametrize("bad", ["whsk_", "whsk_***", "whsk_" + b64(b"x" * 31), "whsec_abc"])
def test_decode_secret_key_refuses_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_secret_key(bad)


# --- properties ----------------------------------------------------------------------------------


@given(
    body=st.binary(max_size=300), msg_id=st.text(min_size=1, max_size=30), ts=st.integers(0, 10**11)
)
def test_libsodium_signed_always_accepted(body: bytes, msg_id: str, ts: int) -> None:
    try:
        msg_id.encode()
    except UnicodeEncodeError:
        return
    verify(body, libsodium_headers(msg_id=msg_id, timestamp=ts, body=body), now=ts)


@given(
    body=st.binary(max_size=200),
    entries=st.lists(
        st.builds(lambda raw: "v1a," + b64(raw), st.binary(min_size=60, max_size=68))
        | st.text(max_size=30),
        max_size=12,
    ),
    secrets=st.lists(
        st.sampled_from([PUBLIC_KEY, HMAC_SECRET, SECRET_KEY])
        | st.builds(lambda raw: "whpk_" + b64(raw), st.binary(max_size=40))
        | st.text(max_size=40),
        max_size=3,
    ),
)
def test_arbitrary_v1a_headers_only_ever_raise_verification_error(
    body: bytes, entries: list[str], secrets: list[str]
) -> None:
    headers = libsodium_headers() | {"webhook-signature": " ".join(entries)}
    with contextlib.suppress(VerificationError):
        verify(body, headers, secrets)
