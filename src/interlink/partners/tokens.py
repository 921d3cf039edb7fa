"""The token manager: a valid access token for a connection, refreshed before it expires.

Single flight at two levels. In one process, concurrent callers of one connection share one
refresh (one task per connection). Across processes, a refresh first takes a lease on the
connection's row (an ``UPDATE … WHERE`` the lease is free or lapsed); a process that loses waits
for the row to change and reads the token the winner stored. The lease lapses by itself if its
holder dies, so a refresh is never stuck.

A token is handed out until it expires; once the refresh point (``refresh_fraction`` of its
lifetime) has passed, the caller still gets it at once and a refresh starts in the background.
A background refresher also renews tokens nobody asked for and retries failed refreshes at
their backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid

import structlog

from interlink.domain import token_refresh
from interlink.domain.token_refresh import RefreshPolicy
from interlink.partners.oauth import IssuedToken, TokenEndpoint, TokenRequestFailed
from interlink.storage.connections import Connection, Connections

log = structlog.get_logger("interlink.partners")

_WAIT_FOR_OTHER_S = 0.05  # how often a process that lost the lease looks at the row again
# Kept between the end of a token request and the end of its lease, for writing the outcome.
_LEASE_MARGIN_S = 1.0


class UnknownConnection(LookupError):
    pass


class TokenUnavailable(Exception):
    """No valid token: the refresh failed, or failed before and its retry is not due yet."""


class TokenManager:
    def __init__(
        self,
        connections: Connections,
        endpoint: TokenEndpoint,
        policy: RefreshPolicy | None = None,
        *,
        poll_interval: float = 1.0,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.connections = connections
        self.endpoint = endpoint
        self.policy = policy or RefreshPolicy()
        self.poll_interval = poll_interval
        # Names this manager in the lease; unique per process (and per manager in one).
        self.owner = owner or f"tm_{uuid.uuid4().hex[:16]}"
        self._rng = rng
        self._known: dict[str, Connection] = {}
        self._refreshing: dict[str, asyncio.Task[Connection]] = {}

    # asking for a token ------------------------------------------------------------------------

    async def get_token(self, connection_id: str) -> str:
        """A valid access token; raises :class:`TokenUnavailable` or :class:`UnknownConnection`."""
        now = time.time()
        connection = self._known.get(connection_id)
        if connection is None or not token_refresh.is_usable(connection.expires_at, now):
            connection = await self._read(connection_id)
        if connection.access_token is not None and token_refresh.is_usable(
            connection.expires_at, now
        ):
            self._known[connection_id] = connection
            retry_at = connection.next_attempt_at
            backing_off = retry_at is not None and now < retry_at
            if not backing_off and not token_refresh.is_fresh(
                connection.refresh_due_at, connection.expires_at, now
            ):
                self._start(connection_id, force=False)  # in the background: this one still works
            return connection.access_token.reveal()
        connection = await asyncio.shield(self._start(connection_id, force=False))
        if connection.access_token is None or not token_refresh.is_usable(
            connection.expires_at, time.time()
        ):
            raise TokenUnavailable(
                f"connection '{connection_id}' has no valid token: "
                f"{connection.last_error or 'no token yet'}"
            )
        return connection.access_token.reveal()

    async def refresh(self, connection_id: str) -> Connection:
        """Refresh now, whatever the token's age or the backoff (an operator asked); the
        connection as it is afterwards, failed or not."""
        return await asyncio.shield(self._start(connection_id, force=True))

    async def authorize(
        self, connection_id: str, code: str, redirect_uri: str | None
    ) -> Connection:
        """Exchanges an authorization code for the connection's first tokens."""
        while True:
            # A refresh already running has no code to exchange: let it end, then exchange.
            running = self._refreshing.get(connection_id)
            if running is None:
                break
            await asyncio.wait([running])
        return await asyncio.shield(
            self._start(connection_id, force=True, code=(code, redirect_uri))
        )

    async def rejected(self, connection_id: str, token: str) -> None:
        """The partner refused ``token`` (a 401): replace it, unless that has happened already
        (many calls refused at once cause one refresh, not one each)."""
        self.forget(connection_id)
        await asyncio.shield(self._start(connection_id, force=True, rejected=token))

    def forget(self, connection_id: str) -> None:
        """Drops what this process remembers (a 401 from the partner, a deleted connection)."""
        self._known.pop(connection_id, None)

    async def _read(self, connection_id: str) -> Connection:
        connection = await self.connections.get_any(connection_id)
        if connection is None:
            self._known.pop(connection_id, None)
            raise UnknownConnection(f"no connection '{connection_id}'")
        return connection

    def _start(
        self,
        connection_id: str,
        *,
        force: bool,
        code: tuple[str, str | None] | None = None,
        rejected: str | None = None,
    ) -> asyncio.Task[Connection]:
        task = self._refreshing.get(connection_id)
        if task is None:
            task = asyncio.create_task(
                self._refresh(connection_id, force=force, code=code, rejected=rejected),
                name=f"token-refresh-{connection_id}",
            )
            self._refreshing[connection_id] = task
            task.add_done_callback(lambda t: self._done(connection_id, t))
        return task

    def _done(self, connection_id: str, task: asyncio.Task[Connection]) -> None:
        if self._refreshing.get(connection_id) is task:
            del self._refreshing[connection_id]
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so a background refresh never warns
        if error is None:
            self._known[connection_id] = task.result()
        elif not isinstance(error, UnknownConnection):
            log.error("token.refresh_crashed", connection_id=connection_id, error=repr(error))

    # refreshing --------------------------------------------------------------------------------

    async def _refresh(
        self,
        connection_id: str,
        *,
        force: bool,
        code: tuple[str, str | None] | None,
        rejected: str | None,
    ) -> Connection:
        """The connection after a refresh (or after finding none was needed, or not yet).

        ``force``: whatever the token's age or the backoff; ``rejected``: only while the token
        held is still that one (a partner refused it), so a refresh that replaced it already
        is enough.
        """

        def needless(connection: Connection, now: float) -> bool:
            if rejected is not None:
                held = connection.access_token
                return (
                    held is not None
                    and held.reveal() != rejected
                    and token_refresh.is_usable(connection.expires_at, now)
                )
            if force:
                return False
            return token_refresh.is_fresh(connection.refresh_due_at, connection.expires_at, now)

        def settled(connection: Connection, now: float) -> bool:
            """Nothing to request now: the token is good, another process refreshed after we
            were asked, or a failure's backoff is running. Judged before taking the lease and
            again under it, because the holder before us may have finished in between."""
            if needless(connection, now):
                return True
            if force and connection.updated_at >= started and connection.last_refreshed_at:
                return True
            retry_at = connection.next_attempt_at
            return not force and retry_at is not None and now < retry_at

        started = time.time()
        waited_until = time.monotonic() + self.policy.lease_seconds + 1.0
        while True:
            connection = await self._read(connection_id)
            if settled(connection, time.time()):
                return connection
            # The clock is read right before the lease is taken: a time read before an await
            # may be seconds old on a busy machine, and would shorten the lease by as much.
            now = time.time()
            lease_clock = time.monotonic()
            if await self.connections.take_lease(
                connection_id, self.owner, now, now + self.policy.lease_seconds
            ):
                break
            if time.monotonic() > waited_until:
                return connection  # the lease is stuck; the caller sees what there is
            await asyncio.sleep(_WAIT_FOR_OTHER_S)

        try:
            # Read again under the lease: the holder before us may have stored a token *or a
            # failure* between our read and our lease (then its backoff applies to us too).
            connection = await self._read(connection_id)
            if settled(connection, time.time()):
                await self.connections.release_lease(connection_id, self.owner)
                return connection
            # The request may not outlive the lease: past it another process may take the
            # refresh over, and two requests would be in flight.
            budget = self.policy.lease_seconds - _LEASE_MARGIN_S - (time.monotonic() - lease_clock)
            try:
                async with asyncio.timeout(max(0.0, budget)):
                    if code is not None:
                        issued = await self.endpoint.exchange_code(connection, *code)
                    else:
                        issued = await self.endpoint.renew(connection)
            except TokenRequestFailed as exc:
                return await self._failed(connection, str(exc))
            except TimeoutError:
                return await self._failed(
                    connection, f"token request outlasted the refresh lease ({budget:.1f} s)"
                )
            return await self._store(connection, issued)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.connections.release_lease(connection_id, self.owner)
            raise

    async def _store(self, connection: Connection, issued: IssuedToken) -> Connection:
        issued_at = time.time()
        expires_at = token_refresh.expires_at(issued_at, issued.expires_in, self.policy)
        stored = await self.connections.store_token(
            connection.id,
            self.owner,
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            issued_at=issued_at,
            expires_at=expires_at,
            refresh_due_at=token_refresh.refresh_due_at(issued_at, expires_at, self.policy),
        )
        if not stored:
            log.warning("token.lease_lost", connection_id=connection.id)
        log.info("token.refreshed", connection_id=connection.id, partner=connection.partner)
        return await self._read(connection.id)

    async def _failed(self, connection: Connection, error: str) -> Connection:
        delay = token_refresh.retry_delay(
            connection.consecutive_failures + 1, self.policy, self._rng
        )
        await self.connections.store_failure(
            connection.id, self.owner, error=error, next_attempt_at=time.time() + delay
        )
        log.warning(
            "token.refresh_failed",
            connection_id=connection.id,
            partner=connection.partner,
            error=error,
            retry_in_s=round(delay, 3),
        )
        return await self._read(connection.id)

    # the background refresher ------------------------------------------------------------------

    async def run(self) -> None:
        """Renews tokens as they come due, and retries failed refreshes at their backoff."""
        while True:
            try:
                for connection_id in await self.connections.due(time.time()):
                    self._start(connection_id, force=False)
            except Exception:
                log.exception("token.refresher_failed")
            await asyncio.sleep(self.poll_interval)

    async def close(self) -> None:
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
