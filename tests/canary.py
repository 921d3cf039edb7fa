"""The canary sweep: no secret shows in a log line, an attempt record or an API response.

A pytest plugin (loaded by tests/conftest.py) that runs around every test of the suite.

**Secrets** are collected as the suite runs, session-wide:

* every credential a test client sends (the bearer token of ``Authorization``, wrong keys too)
  and every secret it supplies when it creates something (``secret``, ``secrets``);
* the key typed into the console's login form, and every console session cookie set;
* the designated fields of creation answers: ``api_key``, ``secret``, ``secrets``, ``token``
  (a stream token) of a 2xx answer to a POST, the one place a secret is shown (a secret known
  before and not supplied by that request, shown there again, is a leak), and the console's
  answer to a rotation (``<code id="new-secret">``), its one place there;
* the secrets the test's databases hold (``sources.secrets``, ``endpoints.secret``), however
  they got there (the demo writes them through the storage layer, not the API), the key files
  in its directory (``.interlink/admin.key``) and the settings' admin key and metrics token;
* canaries a test plants with :meth:`Sweep.plant`: values shaped like nothing the log redaction
  knows (``canary-hmac-…``), so only allow-list logging keeps them out.

**Captures**, per test: every structlog line Interlink writes in-process, rendered by the
production processors (redaction included); every stdlib log record; the output of every e2e
``interlink up`` and any other log file in the test's directory; every API response a test
client receives (status, headers, body; a creation answer without its designated fields); the
attempt records (``attempts.error``, ``attempts.response_excerpt``, ``deliveries.last_error``)
and the kept event headers of the test's databases.

After each test, every secret (and, for ``whsec_``/``ik_`` secrets, the part after the prefix)
is looked for in every capture; a hit fails the test in teardown, naming the secret masked and
where it showed.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import re
import secrets as _secrets
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest
import sqlalchemy as sa
import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from interlink.observability.logging import configure as configure_logging
from interlink.storage.database import Database
from interlink.storage.tenancy import system_scope

# Shorter values ("s1", "nope") are test props, not secrets: as needles they would match
# everywhere. A real secret is far longer.
MIN_LENGTH = 8
# Formats whose body is itself the secret: found without the prefix, it has still leaked.
_PREFIXES = ("whsec_", "whsk_", "ik_admin_", "ik_")
# What a source holds next to its secrets but is no secret: Ed25519 public keys.
_PUBLIC = ("whpk_",)
# The fields of a creation answer that carry the secret it shows once (api/schemas.py).
_SHOWN_ONCE = ("api_key", "secret", "secrets", "token")  # token: a stream token
_CREDENTIAL_HEADERS = ("authorization", "x-api-key")
# The console's session cookie, and where its pages show a new secret once (console/).
_CONSOLE_COOKIE = re.compile(r"interlink_console=([^;]{8,})")
_CONSOLE_SHOWN_ONCE = re.compile(r'<code id="new-secret">([^<]+)</code>')
_LEAKS_SHOWN_PER_SECRET = 5

# Where secrets must never be (the records), and where they are kept (to collect them).
_RECORDS = (
    ("attempt record", "SELECT id, error, response_excerpt FROM attempts"),
    ("delivery record", "SELECT id, last_error FROM deliveries"),
    ("event headers", "SELECT id, headers FROM events"),
)
_HELD = (
    ("source secret (stored)", "SELECT secrets FROM sources"),
    ("endpoint secret (stored)", "SELECT secret FROM endpoints"),
)


@dataclass(frozen=True)
class Secret:
    value: str
    kind: str  # where it came from, for the report


@dataclass(frozen=True)
class Capture:
    kind: str  # log | response | record | output
    where: str
    text: str


@dataclass(frozen=True)
class Leak:
    secret: Secret
    where: str
    excerpt: str  # the text around the hit, every known secret in it masked


def mask(value: str) -> str:
    """Enough to tell secrets apart in a report, not enough to use one."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[:4]}…({len(value)} chars, sha256 {digest})"


def needles(value: str) -> list[str]:
    """What to look for: the secret and the body of a prefixed one, each as it is, escaped
    in JSON and percent-encoded (a base64 secret in a query string)."""
    if len(value) < MIN_LENGTH:
        return []
    plain = [value]
    for prefix in _PREFIXES:
        if value.startswith(prefix):
            if len(value) - len(prefix) >= MIN_LENGTH:
                plain.append(value.removeprefix(prefix))
            break
    found: list[str] = []
    for needle in plain:
        for form in (needle, json.dumps(needle)[1:-1], quote(needle, safe="")):
            if form not in found:
                found.append(form)
    return found


def find_leaks(secrets: Iterable[Secret], captures: Sequence[Capture]) -> list[Leak]:
    """Every capture that contains a secret (once per secret and capture)."""
    secrets = list(secrets)
    # One text, searched by str.find per needle: fast enough for e2e runs of thousands of lines.
    joined = "\x00".join(c.text for c in captures)
    starts: list[int] = []
    offset = 0
    for c in captures:
        starts.append(offset)
        offset += len(c.text) + 1
    leaks: list[Leak] = []
    for secret in secrets:
        hit: set[int] = set()
        for needle in needles(secret.value):
            pos = joined.find(needle)
            while pos != -1:
                index = bisect.bisect_right(starts, pos) - 1
                if index not in hit:
                    hit.add(index)
                    leaks.append(
                        Leak(secret, captures[index].where, _excerpt(joined, pos, needle, secrets))
                    )
                pos = joined.find(needle, pos + len(needle))
    return leaks


def _excerpt(text: str, pos: int, needle: str, secrets: Sequence[Secret]) -> str:
    start, end = max(0, pos - 60), pos + len(needle) + 60
    shown = text[start:end].split("\x00")
    # The capture the hit is in: the piece that holds the hit's offset.
    at, piece = start, shown[0]
    for piece in shown:
        if at <= pos < at + len(piece) + 1:
            break
        at += len(piece) + 1
    for secret in sorted(secrets, key=lambda s: -len(s.value)):
        for n in needles(secret.value):
            piece = piece.replace(n, f"<{secret.kind}: {mask(secret.value)}>")
    return piece


def report(leaks: Sequence[Leak]) -> str:
    lines = [f"canary sweep: {len(leaks)} leak(s) of a secret"]
    shown: Counter[str] = Counter()
    for leak in leaks:
        shown[leak.secret.value] += 1
        if shown[leak.secret.value] > _LEAKS_SHOWN_PER_SECRET:
            continue
        lines.append(
            f"  - {leak.secret.kind} {mask(leak.secret.value)} in {leak.where}: …{leak.excerpt}…"
        )
    for value, count in shown.items():
        if count > _LEAKS_SHOWN_PER_SECRET:
            lines.append(f"  ({count - _LEAKS_SHOWN_PER_SECRET} more of {mask(value)} not shown)")
    return "\n".join(lines)


_STDERR: Any = sys.__stderr__


class _LogTee:
    """The stream structlog writes to in tests: every line is kept, and passed on to stderr."""

    def __init__(self, sweep: Sweep) -> None:
        self._sweep = sweep
        self._partial = ""

    def write(self, text: str) -> int:
        # The process's own stderr, not ``sys.stderr``: a CliRunner swaps that for its own while a
        # command runs, and an in-process server's lines would land in the command's output.
        # pytest's fd capture still files them under the test that wrote them.
        _STDERR.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line:
                self._sweep.capture("log", "a log line", line)
        return len(text)

    def flush(self) -> None:
        _STDERR.flush()

    def isatty(self) -> bool:
        return False


class _RecordFactory:
    """Stdlib log records (uvicorn, asyncio, libraries), with their tracebacks, as they are made.

    A record factory, not a handler: Litestar's logging set-up replaces the root's handlers
    whenever an app is built.
    """

    def __init__(self, sweep: Sweep, make: Any) -> None:
        self._sweep = sweep
        self._make = make
        self._formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self._make(*args, **kwargs)
        with contextlib.suppress(Exception):
            line = self._formatter.format(record)
            record.exc_text = None  # formatted again, as configured, by whoever handles it
            self._sweep.capture("log", f"a stdlib log line ({record.name})", line)
        return record


class Sweep:
    """The secrets of the session and the captures of the running test."""

    def __init__(self) -> None:
        self.secrets: dict[str, Secret] = {}
        self.captures: list[Capture] = []
        self.totals: Counter[str] = Counter()
        self._read: set[Path] = set()
        self._keys: list[str] = []  # secrets keys: what opens the ciphertexts held

    # secrets ----------------------------------------------------------------------------------

    def secret(self, value: object, kind: str) -> None:
        if (
            isinstance(value, str)
            and not value.startswith(_PUBLIC)
            and needles(value)
            and value not in self.secrets
        ):
            self.secrets[value] = Secret(value, kind)

    def secrets_key(self, value: str, kind: str = "secrets key") -> None:
        """A key that encrypts secrets at rest: a secret itself, and what opens the secrets the
        databases hold (sealed since migration 0014), so they are looked for too."""
        self.secret(value, kind)
        with contextlib.suppress(ValueError):
            Fernet(value.encode())
            if value not in self._keys:
                self._keys.append(value)

    def held(self, stored: object) -> list[str]:
        """The secrets in a stored ``sources.secrets`` or ``endpoints.secret``: a ciphertext
        (opened with the keys known), or plaintext from before (a JSON list, a bare string)."""
        value = stored
        if isinstance(value, str) and value.startswith(("[", '"')):
            value = _json(value.encode())
        if isinstance(value, str) and value.startswith("gAAAAA"):
            value = self._open(value)
        items = value if isinstance(value, list) else [value]
        return [i.get("value") if isinstance(i, dict) else i for i in items if i]

    def _open(self, ciphertext: str) -> object:
        if not self._keys:
            return None
        with contextlib.suppress(InvalidToken):
            box = MultiFernet([Fernet(k.encode()) for k in self._keys])
            return _json(box.decrypt(ciphertext.encode()))
        return None

    def plant(self, kind: str, prefix: str = "canary") -> str:
        """A fresh canary, registered: a value no redaction pattern knows."""
        value = f"{prefix}-{_secrets.token_hex(16)}"
        self.secret(value, f"planted {kind}")
        return value

    # captures ---------------------------------------------------------------------------------

    def capture(self, kind: str, where: str, text: str) -> None:
        self.captures.append(Capture(kind, where, text))

    def log_lines(self) -> list[str]:
        """The log lines captured in this test so far."""
        return [c.text for c in self.captures if c.kind == "log"]

    def exchange(
        self,
        method: str,
        path: str,
        request_headers: Mapping[str, str],
        request_body: bytes,
        status: int,
        response_headers: Iterable[tuple[str, str]],
        response_body: bytes,
    ) -> None:
        """One API exchange a test client made: collects its secrets, captures the answer."""
        for name, value in request_headers.items():
            if name.lower() in _CREDENTIAL_HEADERS:
                scheme, _, token = value.partition(" ")
                self.secret(token.strip() if token.strip() else scheme, f"{name} sent")
        sent = _json(request_body)
        supplied: list[object] = []
        if isinstance(sent, dict):
            supplied = [sent.get("secret"), *(sent.get("secrets") or ())]
            for value in supplied:
                self.secret(value, f"secret supplied to {method} {path}")
        body = response_body.decode("utf-8", "replace")
        body, response_headers = self._console(method, request_body, status, response_headers, body)
        answer = _json(response_body)
        if method == "POST" and 200 <= status < 300 and isinstance(answer, dict):
            for name in _SHOWN_ONCE:
                shown = answer.pop(name, None)
                # A secret known before and not supplied now: this is not its creation answer.
                again = [
                    value
                    for value in (shown if isinstance(shown, list) else [shown])
                    if value in self.secrets and value not in supplied
                ]
                for value in shown if isinstance(shown, list) else [shown]:
                    self.secret(value, f"{name} shown by {method} {path}")
                if again:
                    answer[name] = again
            body = json.dumps(answer)
        headers = "\n".join(f"{k}: {v}" for k, v in response_headers)
        where = f"the API response to {method} {path} ({status})"
        self.capture("response", where, f"{headers}\n\n{body}")

    def _console(
        self,
        method: str,
        request_body: bytes,
        status: int,
        response_headers: Iterable[tuple[str, str]],
        body: str,
    ) -> tuple[str, list[tuple[str, str]]]:
        """The console's exchanges (/console): a key typed into its login form is a credential
        sent; a session cookie set is a secret, whose one place is that Set-Cookie header; a
        rotated signing secret's one place is the page that answers the rotation."""
        form = parse_qs(request_body.decode("latin-1")) if method == "POST" else {}
        for value in form.get("key", []):
            self.secret(value, "key typed into the console's login form")
        kept: list[tuple[str, str]] = []
        for name, value in response_headers:
            cookie = _CONSOLE_COOKIE.match(value) if name.lower() == "set-cookie" else None
            if cookie is not None:
                self.secret(cookie.group(1), "console session cookie")
                continue
            kept.append((name, value))
        if method == "POST" and 200 <= status < 300:
            for shown in _CONSOLE_SHOWN_ONCE.findall(body):
                self.secret(shown, "secret shown by the console")
            body = _CONSOLE_SHOWN_ONCE.sub("<shown once>", body)
        return body, kept

    def read_log_file(self, path: Path) -> None:
        if path in self._read:
            return
        self._read.add(path)
        if path.exists():
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                self.capture("log", f"{path.name} line {n}", line)

    def read_sqlite(self, path: Path) -> None:
        """The records of an Interlink SQLite database (and the secrets it holds)."""
        if path in self._read:
            return
        self._read.add(path)
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                self._read_rows(lambda sql: conn.execute(sql).fetchall())
        except sqlite3.DatabaseError:  # not an Interlink database, or not migrated yet
            return

    def read_directory(self, path: Path) -> None:
        """What Interlink left in a test's directory: key files (``.interlink/admin.key``, the
        demo's tenant key), log files and SQLite databases."""
        for key_file in sorted(path.rglob("*.key")):
            self.secrets_key(
                key_file.read_text(errors="replace").strip(), f"key in {key_file.name}"
            )
        for log_file in sorted(path.rglob("*.log")):
            self.read_log_file(log_file)
        for database in sorted(path.rglob("*.db")):
            self.read_sqlite(database)

    async def read_database(self, db: Database) -> None:
        """The same through the storage layer's engine: PostgreSQL databases are dropped before
        the sweep's teardown, so the harness reads them while they exist."""
        with system_scope("canary sweep: every tenant's records"):
            async with db.read() as conn:
                results = {
                    sql: [tuple(r) for r in (await conn.execute(sa.text(sql))).all()]
                    for _, sql in (*_HELD, *_RECORDS)
                }
        self._read_rows(results.__getitem__)

    def _read_rows(self, fetch: Any) -> None:
        for kind, sql in _HELD:
            for (value,) in fetch(sql):
                for secret in self.held(value):
                    self.secret(secret, kind)
        for what, sql in _RECORDS:
            for row_id, *fields in fetch(sql):
                text = "\n".join(f if isinstance(f, str) else json.dumps(f) for f in fields if f)
                self.capture("record", f"{what} {row_id}", text)

    # the check --------------------------------------------------------------------------------

    def leaks(self) -> list[Leak]:
        return find_leaks(self.secrets.values(), self.captures)

    def assert_clean(self) -> None:
        leaks = self.leaks()
        assert not leaks, report(leaks)

    def begin(self) -> None:
        self.captures = []

    def end(self) -> list[Leak]:
        self.totals.update(c.kind for c in self.captures)
        leaks = self.leaks()
        self.captures = []
        return leaks


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or hostile JSON (nested thousands deep)
        return None


class RecordingTransport(httpx.AsyncBaseTransport):
    """Wraps a test client's transport: every exchange goes through :meth:`Sweep.exchange`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, sweep: Sweep) -> None:
        self._inner = inner
        self._sweep = sweep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = await request.aread()
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        self._sweep.exchange(
            request.method,
            request.url.path,
            request.headers,
            sent,
            response.status_code,
            response.headers.multi_items(),
            body,
        )
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


# the plugin ---------------------------------------------------------------------------------------

_SWEEP = pytest.StashKey[Sweep]()
_WORKER_SECRETS = pytest.StashKey[int]()


def capture_logging(sweep: Sweep) -> None:
    """Interlink's own structlog set-up (redaction included), writing into ``sweep``.

    Not cached, so the next set-up (the next test's, or structlog.testing.capture_logs) takes
    effect on loggers already used.
    """
    configure_logging("json", "debug", _LogTee(sweep))
    structlog.configure(cache_logger_on_first_use=False)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SWEEP] = Sweep()


@pytest.fixture(autouse=True)
def canary(request: pytest.FixtureRequest) -> Iterator[Sweep]:
    """The sweep, around every test: captures its logs, and checks everything at the end."""
    sweep = request.config.stash[_SWEEP]
    sweep.begin()
    capture_logging(sweep)
    make_record = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_RecordFactory(sweep, make_record))
    try:
        yield sweep
    finally:
        logging.setLogRecordFactory(make_record)
        structlog.reset_defaults()
    tmp_path = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if isinstance(tmp_path, Path):
        sweep.read_directory(tmp_path)
    leaks = sweep.end()
    if leaks:
        pytest.fail(report(leaks), pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker sweeps its own tests; its counts travel to the controller
    # in ``workeroutput`` so the summary speaks for the whole run.
    workeroutput = getattr(session.config, "workeroutput", None)
    sweep = session.config.stash.get(_SWEEP, None)
    if workeroutput is not None and sweep is not None:
        workeroutput["canary_totals"] = dict(sweep.totals)
        workeroutput["canary_secrets"] = len(sweep.secrets)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {})
    sweep = node.config.stash.get(_SWEEP, None)
    if sweep is None or "canary_totals" not in output:
        return
    sweep.totals.update(output["canary_totals"])
    node.config.stash[_WORKER_SECRETS] = (
        node.config.stash.get(_WORKER_SECRETS, 0) + output["canary_secrets"]
    )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    sweep = config.stash.get(_SWEEP, None)
    if sweep is None or not sweep.totals:
        return
    t = sweep.totals
    secrets = len(sweep.secrets) + config.stash.get(_WORKER_SECRETS, 0)
    terminalreporter.write_line(
        f"canary sweep: {secrets} secrets looked for in {t['log']} log lines, "
        f"{t['response']} API responses, {t['record']} attempt/delivery/event records and "
        f"{t['output']} command outputs"
    )
