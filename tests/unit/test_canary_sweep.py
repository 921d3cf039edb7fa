"""The canary sweep's checker (tests/canary.py) finds what leaked, and says so without leaking.

Each test runs the checker on a sweep of its own, so the session's sweep stays green.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import structlog
from tests.canary import Capture, Secret, Sweep, capture_logging, find_leaks, mask, needles, report

from interlink.ingress.verifiers import standard_webhooks


@pytest.fixture
def synthetic(canary: Sweep) -> Iterator[Sweep]:
    """A sweep of its own, capturing Interlink's log lines; the session's capture after it."""
    sweep = Sweep()
    capture_logging(sweep)
    yield sweep
    capture_logging(canary)


def test_a_planted_secret_logged_under_an_allowed_key_is_reported(synthetic: Sweep) -> None:
    canary = synthetic.plant("hmac source secret", "canary-hmac")
    structlog.get_logger("interlink.ingress").info("ingest.rejected", detail=f"tried {canary}")
    (leak,) = synthetic.leaks()
    assert leak.secret.value == canary and leak.where == "a log line"
    text = report([leak])
    assert canary not in text and mask(canary) in text and "planted hmac source secret" in text
    assert '"event": "ingest.rejected"' in text  # where it was, with the secret masked


def test_pattern_redaction_keeps_shaped_secrets_out_but_not_canaries(synthetic: Sweep) -> None:
    signing = standard_webhooks.generate_secret()
    synthetic.secret(signing, "endpoint secret")
    canary = synthetic.plant("partner secret")
    log = structlog.get_logger("interlink.dispatcher")
    log.warning("delivery.failed", error=f"signed with {signing}")  # scrubbed: whsec_ shape
    log.warning("delivery.failed", client_secret=canary)  # redacted: the key names a secret
    assert synthetic.leaks() == []
    log.warning("delivery.failed", error=f"signed with {canary}")  # no shape, no key: leaks
    assert [leak.secret.value for leak in synthetic.leaks()] == [canary]


def test_a_creation_answer_shows_its_secret_once_and_nowhere_else() -> None:
    sweep = Sweep()
    supplied = sweep.plant("source secret")
    created = {"source": {"id": "src_1", "secret_count": 1}, "secrets": [supplied]}
    body = json.dumps({"name": "p", "verifier": "hmac", "secrets": [supplied]}).encode()
    sweep.exchange("POST", "/api/v1/sources", {}, body, 201, [], json.dumps(created).encode())
    assert sweep.leaks() == []
    created["source"]["verifier_config"] = {"echo": supplied}
    sweep.exchange("POST", "/api/v1/sources", {}, body, 201, [], json.dumps(created).encode())
    listed = json.dumps({"data": [{"id": "src_1", "note": supplied}]}).encode()
    sweep.exchange("GET", "/api/v1/sources", {}, b"", 200, [], listed)
    where = [leak.where for leak in sweep.leaks()]
    assert where == [
        "the API response to POST /api/v1/sources (201)",
        "the API response to GET /api/v1/sources (200)",
    ]


def test_secrets_shown_at_creation_and_credentials_sent_are_collected() -> None:
    sweep = Sweep()
    key = "ik_" + "k" * 43
    answer = {"tenant": {"id": "tnt_1"}, "api_key": key}
    sweep.exchange("POST", "/api/v1/tenants", {}, b"{}", 201, [], json.dumps(answer).encode())
    sweep.exchange(
        "GET", "/api/v1/sources", {"Authorization": "Bearer wrong-key-1234"}, b"", 401, [], b"{}"
    )
    assert {s.value: s.kind for s in sweep.secrets.values()} == {
        key: "api_key shown by POST /api/v1/tenants",
        "wrong-key-1234": "Authorization sent",
    }
    sweep.exchange("GET", "/x", {}, b"", 401, [("www-authenticate", "wrong-key-1234")], b"")
    assert [leak.where for leak in sweep.leaks()] == ["the API response to GET /x (401)"]


def test_the_body_of_a_prefixed_secret_counts_and_short_values_are_no_secrets() -> None:
    signing = standard_webhooks.generate_secret()
    body = signing.removeprefix("whsec_")
    assert needles(signing)[:1] == [signing] and body in needles(signing)
    assert quote(body, safe="") in needles(signing)  # + / = percent-encoded, in a URL
    assert needles('canary-"quoted"') == [
        'canary-"quoted"',
        'canary-\\"quoted\\"',  # inside a JSON string
        "canary-%22quoted%22",
    ]
    assert needles("ik_admin_" + "a" * 20) == ["ik_admin_" + "a" * 20, "a" * 20]
    assert needles("s1") == [] and needles("nope") == []
    secret = Secret(signing, "endpoint secret")
    leaks = find_leaks([secret], [Capture("record", "attempt record atm_1", f"key={body}")])
    assert [leak.where for leak in leaks] == ["attempt record atm_1"]
    assert body not in report(leaks)


def test_each_capture_is_reported_once_per_secret_and_reports_are_bounded() -> None:
    secret = Secret("canary-" + "x" * 20, "planted")
    captures = [Capture("log", f"line {n}", f"{secret.value} {secret.value}") for n in range(9)]
    leaks = find_leaks([secret], captures)
    assert [leak.where for leak in leaks] == [f"line {n}" for n in range(9)]
    text = report(leaks)
    assert text.count("\n  - ") == 5 and "(4 more of" in text and secret.value not in text


def test_a_secret_known_before_is_a_leak_in_a_later_creation_answer() -> None:
    sweep = Sweep()
    first = {"tenant": {"id": "tnt_1"}, "api_key": "ik_" + "a" * 43}
    sweep.exchange("POST", "/api/v1/tenants", {}, b"{}", 201, [], json.dumps(first).encode())
    again = {"api_key": first["api_key"]}  # a new key asked for; the old one came back
    sweep.exchange(
        "POST", "/api/v1/tenants/tnt_1/keys", {}, b"", 201, [], json.dumps(again).encode()
    )
    supplied = {"source": {"id": "src_2"}, "secrets": ["canary-reused-secret"]}
    body = json.dumps({"name": "p", "secrets": ["canary-reused-secret"]}).encode()
    for _ in range(2):  # supplied each time: shown back each time, legitimately
        sweep.exchange("POST", "/api/v1/sources", {}, body, 201, [], json.dumps(supplied).encode())
    assert [leak.where for leak in sweep.leaks()] == [
        "the API response to POST /api/v1/tenants/tnt_1/keys (201)"
    ]
