"""What erasing events does to the store, in the transaction of the job's step.

For the matched events, the events normalized from them and the partner events they were
normalized from: the data becomes ``ERASED_DATA``, the raw body and kept headers are emptied;
their attempts lose the receivers' answers (excerpts, errors); deliveries not yet sent, and
dead ones, are cancelled with reason ``erased``; quarantine entries of those events lose the
canonical event they held and are resolved as erased; the entity states they set are dropped
(the next event of such an entity starts its state machine afresh). Rows, not values, stay:
counts, ids and times still add up in metrics and timelines.

On PostgreSQL the old row versions are gone once VACUUM has run (a dump never holds them); on
SQLite, once the WAL is checkpointed and the file VACUUMed: README, Erasure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.domain.delivery import DeliveryStatus
from interlink.domain.erasure import ERASED, ERASED_DATA
from interlink.storage.tables import attempts, deliveries, entity_states, events, quarantine

_NOT_SENT = (
    DeliveryStatus.PENDING.value,
    DeliveryStatus.SCHEDULED.value,
    DeliveryStatus.DEAD.value,
)


async def erase_events(
    conn: AsyncConnection, tenant_id: str, matched: Sequence[str], now: float | None = None
) -> int:
    """Redacts the matched events and their kin (see the module); the events redacted."""
    if not matched:
        return 0
    now = time.time() if now is None else now
    mine = events.c.tenant_id == tenant_id
    kin = await conn.execute(
        sa.select(events.c.id).where(mine, events.c.derived_from.in_(list(matched)))
    )
    origins = await conn.execute(
        sa.select(events.c.derived_from).where(
            mine, events.c.id.in_(list(matched)), events.c.derived_from.is_not(None)
        )
    )
    ids = sorted({*matched, *(r[0] for r in kin), *(r[0] for r in origins)})
    redacted = await conn.execute(
        events.update()
        .where(mine, events.c.id.in_(ids))
        .values(data=ERASED_DATA, raw=b"", headers={})
    )
    theirs = sa.select(deliveries.c.id).where(
        deliveries.c.tenant_id == tenant_id, deliveries.c.event_id.in_(ids)
    )
    await conn.execute(
        attempts.update()
        .where(attempts.c.tenant_id == tenant_id, attempts.c.delivery_id.in_(theirs))
        .values(response_excerpt=None, error=None)
    )
    await conn.execute(
        deliveries.update()
        .where(
            deliveries.c.tenant_id == tenant_id,
            deliveries.c.event_id.in_(ids),
            deliveries.c.status.in_(_NOT_SENT),
        )
        .values(
            status=DeliveryStatus.CANCELLED.value,
            last_error=ERASED,
            next_attempt_at=None,
            lease_until=None,
            updated_at=now,
        )
    )
    await conn.execute(
        quarantine.update()
        .where(quarantine.c.tenant_id == tenant_id, quarantine.c.event_id.in_(ids))
        .values(
            canonical=None,
            reason=ERASED,
            resolution=sa.func.coalesce(quarantine.c.resolution, ERASED),
            resolved_at=sa.func.coalesce(quarantine.c.resolved_at, now),
        )
    )
    await conn.execute(
        entity_states.delete().where(
            entity_states.c.tenant_id == tenant_id, entity_states.c.event_id.in_(ids)
        )
    )
    return int(redacted.rowcount)
