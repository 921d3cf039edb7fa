"""``interlink up --demo``: Interlink with a simulated partner, three receivers and a live view.

Nothing is mocked. The partner POSTs signed webhooks to the real ingest route; Interlink
verifies, deduplicates, stores, routes and delivers them over loopback to three real receivers
(one healthy, one flaky, one down) that check every signature. The view reads its numbers from
the database and from the dispatcher's settle callbacks.

:class:`Demo` holds the pieces without any display (tests drive it directly); :func:`run_demo`
adds the terminal view and runs until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import shutil
import socket
import sys
import termios
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec
import structlog
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from interlink.app import AlreadyRunning, Interlink, serve
from interlink.config import STATE_DIR, Settings
from interlink.demo.partner import SimulatedPartner
from interlink.demo.receiver import Behaviour, DemoReceiver
from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.delivery import AttemptOutcome, DeliveryStatus
from interlink.domain.models import Envelope
from interlink.domain.retry import RetryPolicy
from interlink.ingress.verifiers import standard_webhooks
from interlink.observability.logging import configure as configure_logging
from interlink.storage.ports import Settled
from interlink.storage.private_files import create_private_file, private_dir

__all__ = [
    "DEMO_DATABASE",
    "DEMO_KEY_FILE",
    "DEMO_LOG_FILE",
    "DEMO_RETRY_SCHEDULE",
    "ENDPOINTS",
    "Demo",
    "EndpointSpec",
    "EndpointView",
    "RecentAttempt",
    "cli_name",
    "demo_settings",
    "render",
    "reset_database",
    "run_demo",
]

log = structlog.get_logger("interlink.demo")

DEMO_DATABASE = STATE_DIR / "demo.db"
DEMO_KEY_FILE = STATE_DIR / "demo-tenant.key"
# The demo source's signing secret, so `interlink sources send` can sign a test webhook with it.
DEMO_SOURCE_SECRET_FILE = STATE_DIR / "demo-source.secret"
DEMO_LOG_FILE = STATE_DIR / "demo.log"
# Short on purpose: retries show within seconds and a dead letter within about 15 s.
DEMO_RETRY_SCHEDULE: tuple[float, ...] = (0, 1, 2, 4, 8)
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
RECENT_LINES = 8
_POLL_SECONDS = 1.0
_FRAME_SECONDS = 0.25


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    behaviour: Behaviour
    event_types: tuple[str, ...]
    breaker: BreakerPolicy | None = None


ENDPOINTS = (
    EndpointSpec("bookings-api", Behaviour.HEALTHY, ("booking.*",)),
    EndpointSpec("channel-manager", Behaviour.FLAKY, ("booking.*", "availability.*")),
    # A breaker far more patient than the default (which opens after 20 attempts), so the
    # demo shows deliveries dead-lettered first; then it opens, and probes every few seconds.
    EndpointSpec(
        "legacy-crm",
        Behaviour.DOWN,
        ("*",),
        BreakerPolicy(min_attempts=1500, open_seconds=5, max_open_seconds=30),
    ),
)


def demo_settings(settings: Settings) -> Settings:
    """The demo's own database (never the user's) and outbound delivery allowed to loopback."""
    networks = tuple(dict.fromkeys((*settings.outbound_allow_networks, *LOOPBACK_NETWORKS)))
    return msgspec.structs.replace(
        settings,
        database_url=f"sqlite:///{DEMO_DATABASE}",
        outbound_allow_networks=networks,
    )


def reset_database(path: Path = DEMO_DATABASE) -> None:
    """Deletes the demo database and its siblings, unless a running demo holds its lock."""
    lock_path = path.with_name(path.name + ".lock")
    if lock_path.exists():
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyRunning(
                    f"a demo is already running on {path}; stop it first (Ctrl-C in its terminal)"
                ) from None
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}.lock"):
        path.with_name(name).unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = create_private_file(path)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


@dataclass
class EndpointView:
    """One endpoint as the view shows it."""

    spec: EndpointSpec
    receiver: DemoReceiver
    endpoint_id: str | None = None
    deliveries: dict[str, int] = field(default_factory=dict)  # by delivery status
    attempts: dict[str, int] = field(default_factory=dict)  # by attempt outcome
    last_status: str = "-"
    breaker: str = "closed"  # its circuit breaker, as the dispatcher shares it


@dataclass(frozen=True)
class RecentAttempt:
    at: float
    endpoint: str
    event_type: str
    event_id: str
    answer: str  # "200", "503", "error"
    outcome: str  # "delivered", "retry in 2.1 s (attempt 2/5)", "dead-lettered after 5 attempts"
    style: str


class Demo:
    """The demo's moving parts: receivers, configuration, partner and counters; no display.

    ``setup(system)`` starts the receivers and creates the demo tenant's configuration through
    ``system.management``; ``start()`` starts the partner and the counter polling; ``stop()``
    stops them and the receivers. ``on_settled`` is meant for ``serve(on_settled=...)``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        rate: float = 25.0,
        duplicate_ratio: float = 0.10,
        forged_ratio: float = 0.02,
        retry_schedule: tuple[float, ...] = DEMO_RETRY_SCHEDULE,
        key_file: Path | None = DEMO_KEY_FILE,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.rate = rate
        self.duplicate_ratio = duplicate_ratio
        self.forged_ratio = forged_ratio
        self.retry = RetryPolicy(schedule=retry_schedule)
        self.key_file = key_file
        self.seed = seed
        self.views = [
            EndpointView(
                spec,
                DemoReceiver(
                    spec.name,
                    standard_webhooks.generate_secret(),
                    spec.behaviour,
                    seed=None if seed is None else seed + i,
                ),
            )
            for i, spec in enumerate(ENDPOINTS)
        ]
        self.recent: deque[RecentAttempt] = deque(maxlen=RECENT_LINES)
        self.partner: SimulatedPartner | None = None
        self.source_id: str | None = None
        self.tenant_id: str | None = None
        self.started_at: float | None = None
        self.failure: str | None = None
        self.system: Interlink | None = None
        self.cli = cli_name()
        self._by_endpoint: dict[str, EndpointView] = {}
        self._stop = asyncio.Event()
        self._partner_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None

    @property
    def ingest_url(self) -> str:
        if self.source_id is None:
            raise RuntimeError("the demo is not set up")
        return f"{self.settings.public_url}/in/{self.source_id}"

    def receiver(self, name: str) -> DemoReceiver:
        for view in self.views:
            if view.spec.name == name:
                return view.receiver
        raise KeyError(name)

    def endpoint_id(self, name: str) -> str:
        for view in self.views:
            if view.spec.name == name and view.endpoint_id is not None:
                return view.endpoint_id
        raise KeyError(name)

    async def setup(self, system: Interlink) -> None:
        """Starts the receivers and creates the tenant, source, endpoints and subscriptions."""
        self.system = system
        for view in self.views:
            await view.receiver.start()
        management = system.management
        tenant, api_key = await management.create_tenant("demo")
        if self.key_file is not None:
            _write_private(self.key_file, api_key)
        partner_secret = standard_webhooks.generate_secret()
        source = await management.create_source(
            tenant.id,
            name="pms-partner",
            verifier="standard_webhooks",
            verifier_config={},
            secrets=[partner_secret],
            envelope=Envelope(key_path="data.booking_id"),
            max_body_bytes=self.settings.ingest_max_body_bytes,
            tolerance_seconds=self.settings.ingest_tolerance_seconds,
        )
        self.source_id = source.id
        self.tenant_id = tenant.id
        if self.key_file is not None:
            _write_private(self.key_file.with_name(DEMO_SOURCE_SECRET_FILE.name), partner_secret)
        for view in self.views:
            endpoint = await management.create_endpoint(
                tenant.id,
                url=view.receiver.url,
                # the name the live view shows, so the API and the view agree
                description=f"{view.spec.name}: demo receiver ({view.spec.behaviour})",
                secret=view.receiver.secret,
                retry=self.retry,
                timeout_seconds=5.0,
                breaker=view.spec.breaker,
            )
            view.endpoint_id = endpoint.id
            self._by_endpoint[endpoint.id] = view
            await management.create_subscription(tenant.id, endpoint.id, view.spec.event_types)
        self.partner = SimulatedPartner(
            self.ingest_url,
            partner_secret,
            rate=self.rate,
            duplicate_ratio=self.duplicate_ratio,
            forged_ratio=self.forged_ratio,
            seed=self.seed,
        )
        log.info("demo.ready", source_id=source.id, tenant_id=tenant.id)

    async def start(self) -> None:
        """Starts the partner and the polling of the delivery counters."""
        if self.partner is None:
            raise RuntimeError("call setup() before start()")
        self.started_at = time.monotonic()
        self._partner_task = asyncio.create_task(self.partner.run(self._stop), name="demo-partner")
        self._poll_task = asyncio.create_task(self._poll(), name="demo-poll")

    def halt_partner(self) -> None:
        """Asks the partner to stop sending (it finishes the requests under way)."""
        self._stop.set()

    async def stop_partner(self) -> None:
        """Stops the partner and waits for the requests it has under way."""
        self._stop.set()
        if self._partner_task is not None:
            with contextlib.suppress(Exception):
                await self._partner_task

    async def stop(self) -> None:
        """Stops the partner, the polling and the receivers; safe to call more than once."""
        await self.stop_partner()
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poll_task
        if self.partner is not None:
            await self.partner.close()
        for view in self.views:
            await view.receiver.stop()

    async def refresh_counts(self) -> None:
        """Reads delivery and attempt counts per endpoint from the database."""
        if self.system is None:
            return
        deliveries = await self.system.deliveries.counts()
        attempts = await self.system.deliveries.attempt_counts()
        for endpoint_id, view in self._by_endpoint.items():
            view.deliveries = deliveries.get(endpoint_id, {})
            view.attempts = attempts.get(endpoint_id, {})
            if self.tenant_id is not None:
                lane = await self.system.management.endpoint_lane(self.tenant_id, endpoint_id)
                view.breaker = lane.breaker.state.value

    async def _poll(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.refresh_counts()
            except Exception as exc:  # a busy or closing database: try again next time
                log.warning("demo.poll_failed", error=repr(exc))
            # The counts scan every delivery and attempt; on a long run keep them under ~10 %.
            took = time.monotonic() - began
            await asyncio.sleep(max(_POLL_SECONDS, 10 * took))

    def on_settled(self, settled: Settled) -> None:
        view = self._by_endpoint.get(settled.claimed.endpoint_id)
        if view is None:
            return
        result, decision = settled.result, settled.decision
        answer = str(result.status_code) if result.status_code is not None else "error"
        view.last_status = answer
        budget = len(settled.claimed.retry_schedule)
        if decision.status is DeliveryStatus.SUCCEEDED:
            tries = "" if decision.attempt_count == 1 else f" on attempt {decision.attempt_count}"
            outcome, style = f"delivered{tries}", "green"
        elif decision.status is DeliveryStatus.DEAD:
            outcome, style = f"dead-lettered after {decision.attempt_count} attempts", "bold red"
        else:
            wait = decision.next_attempt_in or 0.0
            outcome = f"retry in {wait:.1f} s (attempt {decision.attempt_count}/{budget})"
            style = "yellow"
        self.recent.append(
            RecentAttempt(
                at=time.time(),
                endpoint=view.spec.name,
                event_type=settled.claimed.event_type,
                event_id=settled.claimed.event_id,
                answer=answer,
                outcome=outcome,
                style=style,
            )
        )


# the view ----------------------------------------------------------------------------------


def _n(value: int, short: bool = False) -> str:
    if short and value >= 10_000:
        return f"{value / 1000:.1f}k" if value < 100_000 else f"{value // 1000:,}k"
    return f"{value:,}"


def cli_name() -> str:
    """How the user can call this CLI again: ``interlink`` if that is on PATH, else its path
    (``.venv/bin/interlink`` after ``make demo``)."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "interlink":
        return "interlink"
    found = shutil.which("interlink")
    if found is not None and Path(found).resolve() == argv0.resolve():
        return "interlink"
    try:
        return str(argv0.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(argv0)


def send_command(demo: Demo) -> str:
    """A command that sends one signed webhook to the demo's source, for the user to copy: on
    two lines joined by a backslash, so a terminal's wrapping cannot split it elsewhere."""
    return (
        f"{demo.cli} sources send {demo.source_id} --type booking.created \\\n"
        f'  --data \'{{"booking_id":"b-1"}}\' --secret-file {DEMO_SOURCE_SECRET_FILE}'
    )


def _header(demo: Demo, narrow: bool) -> Panel:
    url = demo.settings.public_url
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(
        "Interlink", Text.assemble((url, "bold cyan"), "   API docs ", (f"{url}/docs", "cyan"))
    )
    # The console's login takes the demo tenant's key from its file: the key is never printed.
    grid.add_row(
        "Console",
        Text.assemble(
            (f"{url}/console", "bold cyan"),
            "   log in with the key in ",
            (str(DEMO_KEY_FILE), "bold"),
        ),
    )
    grid.add_row("Ingest URL", Text(demo.ingest_url if demo.source_id else "…", style="cyan"))
    grid.add_row("Try the API", Text(f"export INTERLINK_API_KEY=$(cat {DEMO_KEY_FILE})", "bold"))
    if url != Settings().public_url:
        grid.add_row("", Text(f"export INTERLINK_API_URL={url}", "bold"))
    grid.add_row(
        "",
        Text.assemble(
            (f"{demo.cli} events tail", "bold"),
            ("" if narrow else "   (keys are never printed)", "dim"),
        ),
    )
    if demo.source_id:
        grid.add_row("Send one", Text(send_command(demo), "bold"))
    where = f"log {DEMO_LOG_FILE}" if narrow else f"log {DEMO_LOG_FILE} · data {DEMO_DATABASE}"
    return Panel(
        grid,
        title="[bold]Interlink demo[/]",
        subtitle=f"[bold yellow]Ctrl-C to stop[/] [dim]· {where}[/]",
        border_style="cyan",
        box=box.ROUNDED,
    )


def _partner(demo: Demo, narrow: bool) -> Panel:
    title = f"[bold]Partner[/] [dim]simulated PMS · {demo.rate:g} booking webhooks/s, signed[/]"
    partner = demo.partner
    if partner is None:
        waiting = Text("not started" if demo.failure else "setting up…", style="dim")
        return Panel(waiting, title=title, title_align="left", box=box.ROUNDED)
    s = partner.stats
    elapsed = time.monotonic() - demo.started_at if demo.started_at else 0.0
    gap = "  " if narrow else "   "
    text = Text.assemble(
        "sent ",
        (_n(s.sent), "bold"),
        (f" ({s.sent / elapsed:.0f}/s)" if elapsed > 1 else "", "dim"),
        f"{gap}accepted ",
        (_n(s.accepted), "bold green"),
        f"{gap}deduped " if narrow else f"{gap}duplicates deduped ",
        (_n(s.duplicates), "bold cyan"),
        (f"/{_n(s.sent_duplicates)}" if narrow else f"/{_n(s.sent_duplicates)} resent", "dim"),
        f"{gap}rejected ",
        (_n(s.rejected), "bold red" if s.rejected else "bold"),
        f"{gap}errors ",
        (_n(s.errors), "bold red" if s.errors else "bold"),
    )
    if s.rejections:
        reason, count = s.rejections.most_common(1)[0]
        others = len(s.rejections) - 1
        text.append("\n" if narrow else "\nrejected: ", style="dim")
        text.append(reason, style="red")
        if others == 0 and count == s.sent_forged:
            note = " (all forged)" if narrow else f" ({_n(count)}; all forged on purpose)"
        else:
            more = f", +{others} other reasons" if others else ""
            note = f" ({_n(count)}{more}; {_n(s.sent_forged)} forged on purpose)"
        text.append(note, style="dim")
    if s.last_error:
        text.append("\nlast error: ", style="dim")
        text.append(s.last_error, style="red")
    return Panel(text, title=title, title_align="left", box=box.ROUNDED)


_BEHAVIOUR_STYLE = {
    Behaviour.HEALTHY: "green",
    Behaviour.FLAKY: "yellow",
    Behaviour.DOWN: "red",
}


def _endpoints(demo: Demo, narrow: bool) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("\nendpoint", no_wrap=True)
    if not narrow:
        table.add_column("\nbehaves", no_wrap=True)
    table.add_column("\ndelivered", justify="right", style="green")
    table.add_column("\nretry" if narrow else "\nretrying", justify="right", style="yellow")
    if not narrow:
        table.add_column("\nin flight", justify="right")
    # Pending deliveries: waiting for a slot or a token, or held while the breaker is open (not
    # in flight: nothing is being sent for them).
    table.add_column("\nqueued", justify="right")
    table.add_column("\ndead", justify="right", style="red")
    table.add_column("attempts\nok/fail" if narrow else "attempts\nok/failed", justify="right")
    table.add_column("receiver\nuniq/dup" if narrow else "receiver\nunique/dup", justify="right")
    if not narrow:
        table.add_column("\nlast", justify="right")
    for view in demo.views:
        d, a, r = view.deliveries, view.attempts, view.receiver.stats
        failed = sum(n for k, n in a.items() if k != AttemptOutcome.SUCCEEDED)
        in_flight = d.get(DeliveryStatus.IN_FLIGHT, 0)
        queued = d.get(DeliveryStatus.PENDING, 0) + (in_flight if narrow else 0)
        if view.last_status == "-":
            last_style = "dim"
        else:
            last_style = "green" if view.last_status.startswith("2") else "red"
        behaviour = Text(view.spec.behaviour, style=_BEHAVIOUR_STYLE[view.spec.behaviour])
        if view.breaker != "closed":
            behaviour.append(f" · breaker {view.breaker.replace('_', '-')}", style="bold red")
        name = Text(view.spec.name, style="bold")
        if narrow:
            name.stylize(_BEHAVIOUR_STYLE[view.spec.behaviour])
            if view.breaker != "closed":
                name.append(" ⚡", style="bold red")  # its breaker is open or probing
        cells: list[RenderableType] = [name] if narrow else [name, behaviour]
        n = functools.partial(_n, short=narrow)
        cells += [
            n(d.get(DeliveryStatus.SUCCEEDED, 0)),
            n(d.get(DeliveryStatus.SCHEDULED, 0)),
            *([] if narrow else [n(in_flight)]),
            Text(f"{n(queued)} held", style="yellow")
            if queued and view.breaker == "open"
            else n(queued),
            n(d.get(DeliveryStatus.DEAD, 0)),
            Text.assemble(
                (n(a.get(AttemptOutcome.SUCCEEDED, 0)), "green"), ("/", "dim"), (n(failed), "red")
            ),
            Text.assemble(
                n(r.unique), ("/", "dim"), (n(r.duplicates), "bold red" if r.duplicates else "")
            ),
        ]
        if not narrow:
            cells.append(Text(view.last_status, style=last_style))
        table.add_row(*cells)
    schedule = " · ".join(f"{d:g}" for d in demo.retry.schedule)
    title = f"[bold]Endpoints[/] [dim]retries after {schedule} s, then dead-lettered[/]"
    if narrow:
        title = "[bold]Endpoints[/] [dim]·[/] [green]healthy[/] [yellow]flaky[/] [red]down[/]"
    return Panel(table, title=title, title_align="left", box=box.ROUNDED)


def _recent(demo: Demo, lines: int, width: int) -> Panel:
    with_time, with_ids = width >= 90, width >= 110
    table = Table.grid(padding=(0, 1))
    if with_time:
        table.add_column(style="dim", no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    if with_ids:
        table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis")
    shown = list(demo.recent)[-lines:] if lines > 0 else []
    for item in reversed(shown):
        cells: list[RenderableType] = []
        if with_time:
            cells.append(time.strftime("%H:%M:%S", time.localtime(item.at)))
        cells += [item.endpoint, item.event_type]
        if with_ids:
            cells.append(f"…{item.event_id[-8:]}")
        cells += [Text(item.answer, style=item.style), Text(item.outcome, style=item.style)]
        table.add_row(*cells)
    for _ in range(max(0, lines - len(shown))):
        table.add_row()
    return Panel(
        table, title="[bold]Recent delivery attempts[/]", title_align="left", box=box.ROUNDED
    )


def render(demo: Demo, console: Console | None = None) -> RenderableType:
    """The whole view from the demo's current counters, fitted to ``console`` if given."""
    width = console.width if console is not None else 120
    narrow = width < 100
    parts: list[RenderableType] = [_header(demo, narrow)]
    if demo.failure:
        parts.append(Panel(Text(demo.failure, style="bold red"), border_style="red"))
    endpoints = _endpoints(demo, narrow)
    if not narrow and console is not None:
        # A breaker's state widens the table: fall back to the narrow one rather than let rich
        # squeeze (and cut) the column headers.
        table = endpoints.renderable
        if Measurement.get(console, console.options, table).maximum > width - 4:
            endpoints = _endpoints(demo, narrow=True)
    top = Group(*parts, _partner(demo, narrow), endpoints)
    lines = RECENT_LINES
    if console is not None and console.is_terminal:
        used = len(console.render_lines(top, console.options, pad=False))
        # Two lines for the recent panel's borders, one for the cursor below the view.
        lines = max(1, min(RECENT_LINES, console.height - used - 3))
    return Group(top, _recent(demo, lines, width))


# running it --------------------------------------------------------------------------------


def _check_port_free(host: str, port: int) -> None:
    """A clear message now beats uvicorn's exit after the view has taken the screen."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AlreadyRunning(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = (
                " (is Interlink already running? choose another with --port)"
                if exc.errno == errno.EADDRINUSE
                else ""
            )
            raise AlreadyRunning(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None


@contextlib.contextmanager
def _no_echo() -> Iterator[None]:
    """Typed keys (and the ``^C`` a terminal echoes) would shift the live view out of place."""
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (OSError, ValueError, termios.error):
        saved = None
    if saved is None:
        yield
        return
    quiet = list(saved)
    quiet[3] = quiet[3] & ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _open_log() -> IO[str]:
    private_dir(DEMO_LOG_FILE.parent)
    fd = os.open(DEMO_LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", buffering=1)


_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp", "asyncio")


def _logs_to(stream: IO[str], level: str) -> None:
    """Every log line to ``stream`` (the demo's log file) instead of the terminal."""
    configure_logging("json", level, stream=stream)
    handler = logging.StreamHandler(stream)
    for name in _STDLIB_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


def _logs_back(settings: Settings) -> None:
    """Logging as ``interlink up`` has it, once the log file is closed."""
    configure_logging(settings.log_format, settings.log_level)
    for name in _STDLIB_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


async def run_demo(settings: Settings) -> None:
    """Runs Interlink with the demo until Ctrl-C, drawing what happens in the terminal."""
    settings = demo_settings(settings)
    _check_port_free(settings.host, settings.port)
    reset_database()
    console = Console()
    demo = Demo(settings)
    with _open_log() as log_stream, contextlib.ExitStack() as restore:
        restore.callback(_logs_back, settings)
        _logs_to(log_stream, settings.log_level)

        async def started(system: Interlink) -> None:
            # uvicorn set up its loggers when it made the server: send them to the file again.
            _logs_to(log_stream, settings.log_level)
            try:
                await demo.setup(system)
                await demo.start()
            except Exception as exc:
                demo.failure = f"demo set-up failed: {exc!r}; see {DEMO_LOG_FILE}, Ctrl-C to stop"
                log.exception("demo.setup_failed")
                return

        with (
            _no_echo(),
            Live(render(demo, console), console=console, auto_refresh=False) as live,
        ):
            if not console.is_terminal:
                # Without a terminal the view is drawn once, at the end; say where things are.
                console.print(
                    f"Interlink demo on {settings.public_url} (console {settings.public_url}"
                    f"/console, log in with the key in {DEMO_KEY_FILE}; API docs "
                    f"{settings.public_url}/docs); the live view needs a terminal. Ctrl-C to stop.",
                    highlight=False,
                )
            painter = asyncio.create_task(_paint(live, demo), name="demo-view")
            try:
                await serve(
                    settings,
                    on_started=started,
                    on_settled=demo.on_settled,
                    on_stopping=demo.halt_partner,
                )
            finally:
                demo.halt_partner()
                painter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await painter
                await demo.stop()
                live.update(render(demo, console), refresh=True)
    if not console.is_terminal:
        console.line()
    if demo.partner is not None:
        s = demo.partner.stats
        delivered = sum(v.deliveries.get(DeliveryStatus.SUCCEEDED, 0) for v in demo.views)
        console.print(
            f"Demo stopped: {s.sent:,} sent, {s.accepted:,} accepted, {s.duplicates:,} deduped, "
            f"{s.rejected:,} rejected, {delivered:,} delivered.\n"
            f"The data stays in {DEMO_DATABASE} until the next demo.",
            highlight=False,
        )


async def _paint(live: Live, demo: Demo) -> None:
    while True:
        try:
            live.update(render(demo, live.console), refresh=True)
        except Exception as exc:  # a drawing bug must not take the demo down
            log.warning("demo.render_failed", error=repr(exc))
        await asyncio.sleep(_FRAME_SECONDS)
