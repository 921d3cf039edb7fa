"""Moving a named cursor (the router's, the normalization stage's) inside a transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from interlink.storage.ports import CursorMoved
from interlink.storage.tables import cursors


async def move_cursor(
    conn: AsyncConnection, dialect: Any, name: str, position: int, previous: int | None
) -> None:
    """Sets the cursor to ``position``. With ``previous``, only from there: if another process
    moved it first, ``CursorMoved`` is raised (and the caller's transaction rolls back). Called
    first in a transaction, a second writer blocks on the cursor's row, then finds it moved."""
    insert = dialect.insert(cursors).values(name=name, position=position)
    if previous is None:
        await conn.execute(
            insert.on_conflict_do_update(index_elements=["name"], set_={"position": position})
        )
        return
    moved = await conn.execute(
        cursors.update()
        .where(cursors.c.name == name, cursors.c.position == previous)
        .values(position=position)
    )
    if moved.rowcount:
        return
    if previous == 0:  # the first batch ever: the row may not exist yet
        created = await conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
        if created.rowcount:
            return
    raise CursorMoved(name)
