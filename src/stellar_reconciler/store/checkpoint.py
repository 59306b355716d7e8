"""The compare-and-set that every write leans on: a checkpoint moves only from where it was."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, and_, select, update

from stellar_reconciler.errors import CheckpointConflictError
from stellar_reconciler.store.schema import checkpoints


def advance(conn: Connection, stream: str, expected: int, new: int) -> None:
    """Move `stream`'s checkpoint from `expected` to `new` inside the caller's transaction, or
    raise CheckpointConflictError (the caller's transaction then rolls back whole)."""
    moved = conn.execute(
        update(checkpoints)
        .where(and_(checkpoints.c.stream == stream, checkpoints.c.ledger == expected))
        .values(ledger=new, updated_at=datetime.now(UTC))
    ).rowcount
    if moved != 1:
        found = conn.execute(
            select(checkpoints.c.ledger).where(checkpoints.c.stream == stream)
        ).scalar_one_or_none()
        raise CheckpointConflictError(stream, expected, found)
