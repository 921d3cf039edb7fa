"""Whose data a piece of work may see: one tenant's, or (the pipeline, the admin) everyone's.

The scope lives in a context variable, so it follows the work through awaits and into the tasks
started inside it, and never leaks between concurrent requests. On PostgreSQL each transaction
hands it to the database as transaction-local settings (``storage/database.py``) that the
row-level security policies read (``storage/rls.py``): with no scope, a query sees no rows at
all. On SQLite it is not consulted; isolation there is the tenant filter in every query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    tenant_id: str | None  # None: the system scope
    reason: str  # why the work sees what it sees; for logs and for the reader of a stack trace

    @property
    def is_system(self) -> bool:
        return self.tenant_id is None


_current: ContextVar[Scope | None] = ContextVar("interlink_tenant_scope", default=None)


def current() -> Scope | None:
    return _current.get()


@contextlib.contextmanager
def _entered(scope: Scope | None) -> Iterator[Scope | None]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def tenant_scope(tenant_id: str) -> contextlib.AbstractContextManager[Scope | None]:
    """Work on behalf of one tenant: the database shows it that tenant's rows only."""
    if not tenant_id:
        raise ValueError("a tenant scope needs a tenant id")
    return _entered(Scope(tenant_id, "tenant"))


def system_scope(reason: str) -> contextlib.AbstractContextManager[Scope | None]:
    """Work across tenants (the pipeline, admin operations): the explicit, separate path."""
    if not reason:
        raise ValueError("say why the work needs the system scope")
    return _entered(Scope(None, reason))


def no_scope() -> contextlib.AbstractContextManager[Scope | None]:
    """Work that sees no tenant's rows, whatever scope its caller had (an unauthenticated
    request served in the caller's task, as in-process ASGI clients do)."""
    return _entered(None)
