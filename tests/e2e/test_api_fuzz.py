"""Schemathesis against a running Interlink (``interlink up`` on SQLite) and its live
``/openapi.json``: every operation, every check, a bounded number of examples.

A server error, a response that breaks its documented schema, status or content type, a
schema-valid request refused with a 400, a schema-breaking one accepted, a 405 without ``Allow``:
each fails the test. Refusals the document cannot state (a URL that resolves to a private
address, an unknown verifier, 'after' later than 'before') are 422, which the positive check
accepts; everything else the API refuses is in the document, so a 400 to a request the document
allows is the document lying.

Two runs: the admin key over the admin's operations (tenants), a tenant's key over the rest
(where the admin key gets 403, as documented). ``INTERLINK_FUZZ_EXAMPLES`` sets the examples per
operation and phase (default 15: two to three minutes on two busy cores).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import ADMIN_KEY, InterlinkProcess

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = int(os.environ.get("INTERLINK_FUZZ_EXAMPLES", "15"))
SEED = 20261203  # failures reproduce; change it (or the examples) to look elsewhere
RUN_TIMEOUT = 540.0
ADMIN_PATHS = r"^/api/v1/tenants"
# A stream answers for as long as the client stays: schemathesis would wait for its end until
# its timeout. tests/integration/test_streams.py holds it to the document (status, media type,
# every refusal) instead.
STREAMS = "/api/v1/stream"

CONFIG = """\
[checks.positive_data_acceptance]
# 422: refused by a rule the document cannot state (its detail says which); see the module.
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# A batch of more events than the document's maxItems is too much for one request: 413, as
# documented, not a malformed body.
[[operations]]
include-path = "/api/v1/events/batch"
include-method = "POST"
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "413", "422"]

# The stateful phase guesses that a source's sub-resources exist once the source does; a
# source's reconciler exists only once it is set (PUT), so its 404 before that is the truth.
[[operations]]
include-path = "/api/v1/sources/{source_id}/reconciler"
include-method = "GET"
checks.ensure_resource_availability.enabled = false
"""


# What Hypothesis reads to decide it runs in CI (hypothesis._settings: is_in_ci).
_CI_MARKERS = frozenset(
    {
        "CI",
        "TF_BUILD",
        "BUILDKITE",
        "CIRCLECI",
        "CIRRUS_CI",
        "CODEBUILD_BUILD_ID",
        "GITHUB_ACTIONS",
        "GITLAB_CI",
        "HEROKU_TEST_RUN_ID",
        "TEAMCITY_VERSION",
        "bamboo.buildKey",
        "__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI",
    }
)


def _schemathesis(
    workdir: Path, base_url: str, key: str, name: str, *select: str
) -> tuple[int, str, Path]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    junit = workdir / f"{name}.xml"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--header",
        f"Authorization: Bearer {key}",
        # Path parameters are any string: many are dropped as not usable in a URL, which is
        # a property of the generator, not of the API.
        "--suppress-health-check",
        "filter_too_much,too_slow",
        # Longer than the longest long poll (a pull claim waits up to 30 s by design).
        "--request-timeout",
        "45",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
        "--no-color",
        "--warnings",
        "off",
        *select,
    ]
    done = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        # Without the CI markers: under CI, Hypothesis's "ci" profile changes how the fuzzing
        # phase generates (health checks fail that the run suppresses), and the run is meant to
        # be the same everywhere, fixed by its seed and flags.
        env={k: v for k, v in os.environ.items() if k not in _CI_MARKERS}
        | {"SCHEMATHESIS_HOOKS": ""},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, junit


def _operations(junit: Path) -> dict[str, list[str]]:
    """Each operation the run tested, with its failures and errors."""
    found: dict[str, list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problems = [
            f"{p.tag}: {(p.get('message') or p.text or '')[:300]}"
            for p in case
            if p.tag in ("failure", "error")
        ]
        found[case.get("name", "?")] = problems
    return found


async def test_the_api_keeps_its_openapi_document(
    interlink: InterlinkProcess, tmp_path: Path
) -> None:
    base = interlink.base_url
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        made = await client.post("/api/v1/tenants", json={"name": "fuzz"}, headers=admin)
        assert made.status_code == 201, made.text
        key = made.json()["api_key"]
        document = (await client.get("/openapi.json")).json()
    every = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    started = time.monotonic()
    runs = {
        "admin": await asyncio.to_thread(
            _schemathesis, tmp_path, base, ADMIN_KEY, "admin", "--include-path-regex", ADMIN_PATHS
        ),
        "tenant": await asyncio.to_thread(
            _schemathesis,
            tmp_path,
            base,
            key,
            "tenant",
            "--exclude-path-regex",
            ADMIN_PATHS,
            "--exclude-path",
            STREAMS,
        ),
    }
    elapsed = time.monotonic() - started
    tested: dict[str, list[str]] = {}
    for name, (code, output, junit) in runs.items():
        assert junit.exists(), f"schemathesis ({name}) wrote no report:\n{output[-5000:]}"
        operations = _operations(junit)
        failing = {op: found for op, found in operations.items() if found}
        assert not failing and code == 0, (
            f"schemathesis ({name}) found problems (exit {code}):\n{output[-15000:]}"
        )
        tested.update(operations)
    untested = every - set(tested) - {f"GET {STREAMS}"}
    assert not untested, f"operations never tested: {sorted(untested)}"
    generated = sum(
        int(m.group(1))
        for _, output, _ in runs.values()
        for m in re.finditer(r"(\d+) generated", output)
    )
    print(
        f"schemathesis: {len(every)} operations, {generated} test cases "
        f"(at most {EXAMPLES} per operation and phase), {elapsed:.0f} s, 0 findings"
    )
