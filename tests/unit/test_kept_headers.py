"""The headers ingest keeps with an event (shown by the event API): never a credential."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from interlink.ingress.app import kept_headers

SECRET = "canary-hmac-5e3b0c1d9a7f4e2b8c6d0a1f3e5b7c9d"


def test_envelope_and_signature_headers_are_kept_credentials_are_not() -> None:
    headers = {
        "content-type": "application/json",
        "user-agent": "partner/1.0",
        "webhook-id": "msg_1",
        "webhook-signature": "v1,abc",
        "x-hub-signature-256": "sha256=abc",
        "x-request-id": "r-1",
        "authorization": "Bearer abc",
        "cookie": "session=abc",
        "x-api-key": "abc",
        "x-auth-token": "abc",
        "x-gitlab-token": "abc",
        "x-webhook-secret": "abc",
        "x-amz-security-token": "abc",
        "x-custom": f"t={SECRET}",  # the source's own secret, under any name
        "via": "proxy",
    }
    assert kept_headers(headers, [SECRET]) == {
        "content-type": "application/json",
        "user-agent": "partner/1.0",
        "webhook-id": "msg_1",
        "webhook-signature": "v1,abc",
        "x-hub-signature-256": "sha256=abc",
        "x-request-id": "r-1",
    }


@given(
    name=st.from_regex(r"x-[a-z-]{1,20}", fullmatch=True),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_a_header_carrying_a_secret_of_the_source_is_never_kept(
    name: str, before: str, after: str
) -> None:
    assert name not in kept_headers({name: before + SECRET + after}, ["other-secret", SECRET])
