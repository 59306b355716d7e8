"""Backfill runs and their chunks: the plan, each chunk's one transaction, and the stitch.

A chunk's ledgers and events are written in the same transaction that marks it done and
records the previous hash of its first ledger and the hash of its last, read back from the
rows just written: a worker killed before the commit leaves nothing, one killed after it
leaves a done chunk that a retry finds with nothing missing. The stitch then walks a run's
chunks in order and moves its "verified contiguous through" mark over every chunk that is
done and chains by hash to the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from stellar_reconciler.models import Batch, iso_utc
from stellar_reconciler.reconcile import Range, split_range
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.schema import backfill_chunks, backfill_runs, ledgers

# Writes one batch's rows into a range behind the checkpoint (Store._replace_rows).
RowWriter = Callable[[Connection, Batch, Sequence[Any]], None]
CHUNK_STATES = ("pending", "running", "done", "failed")


@dataclass(frozen=True, slots=True)
class Chunk:
    id: int
    run_id: int
    first_ledger: int
    last_ledger: int
    state: str
    attempts: int
    worker: str | None
    first_previous_hash: str | None
    last_hash: str | None


@dataclass(frozen=True, slots=True)
class Stitch:
    """What one stitch found: the mark, and the ledger where two chunks do not chain."""

    verified_through: int
    broken_at: int | None = None
    expected: str | None = None
    found: str | None = None
    complete: bool = False


def _chunk(row: Any) -> Chunk:
    return Chunk(
        row.id,
        row.run_id,
        row.first_ledger,
        row.last_ledger,
        row.state,
        row.attempts,
        row.worker,
        row.first_previous_hash,
        row.last_hash,
    )


class Chunks:
    """Backfill runs, their chunks, and the stitch mark; one method per named operation."""

    def __init__(self, engine: Engine, write_rows: RowWriter) -> None:
        self.engine = engine
        self._write_rows = write_rows

    def plan(
        self, first: int, last: int, chunk_ledgers: int, requested_by: str, missing: list[Range]
    ) -> tuple[int, list[Chunk]]:
        """A new run of first..last cut into chunks of `chunk_ledgers`, all pending."""
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            run_id = conn.execute(
                insert(backfill_runs)
                .values(
                    first_ledger=first,
                    last_ledger=last,
                    chunk_ledgers=chunk_ledgers,
                    requested_by=requested_by[:64],
                    created_at=now,
                    verified_through=first - 1,
                    missing=[list(r) for r in missing],
                )
                .returning(backfill_runs.c.id)
            ).scalar_one()
            rows = [
                {
                    "run_id": run_id,
                    "first_ledger": a,
                    "last_ledger": b,
                    "state": "pending",
                    "attempts": 0,
                    "ledgers_written": 0,
                    "events_written": 0,
                    "sources": [],
                    "updated_at": now,
                }
                for a, b in split_range(first, last, chunk_ledgers)
            ]
            conn.execute(insert(backfill_chunks), rows)
        return int(run_id), self.chunks(int(run_id))

    def chunks(self, run_id: int) -> list[Chunk]:
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(backfill_chunks)
                .where(backfill_chunks.c.run_id == run_id)
                .order_by(backfill_chunks.c.first_ledger)
            )
            return [_chunk(r) for r in rows]

    def chunk(self, chunk_id: int) -> Chunk | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(backfill_chunks).where(backfill_chunks.c.id == chunk_id)
            ).one_or_none()
        return _chunk(row) if row is not None else None

    def start(self, chunk_id: int, worker: str) -> None:
        """Mark a chunk running (again, after a worker died on it) by `worker`: one more
        attempt."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(backfill_chunks)
                .where(backfill_chunks.c.id == chunk_id)
                .values(
                    state="running",
                    worker=worker[:128],
                    attempts=backfill_chunks.c.attempts + 1,
                    error=None,
                    updated_at=datetime.now(UTC),
                )
            )

    def write(
        self,
        chunk: Chunk,
        batches: Iterable[Batch],
        sources: list[list[Any]],
        hooks: Sequence[Any] = (),
    ) -> tuple[int, int]:
        """Every batch of the chunk, its hashes and its done state, in one transaction.
        Returns (ledgers, events) written; batches found stored by now are left alone. Each
        batch is let go once written, so `batches` may be read as it is written."""
        ledgers_written = events_written = 0
        with write_transaction(self.engine) as conn:
            for batch in batches:
                present = conn.execute(
                    select(func.count())
                    .select_from(ledgers)
                    .where(ledgers.c.sequence.between(batch.first_ledger, batch.last_ledger))
                ).scalar_one()
                if present:
                    continue
                self._write_rows(conn, batch, hooks)
                ledgers_written += len(batch.ledgers)
                events_written += len(batch.events)
            ends = {
                int(r.sequence): r
                for r in conn.execute(
                    select(ledgers.c.sequence, ledgers.c.hash, ledgers.c.previous_hash).where(
                        ledgers.c.sequence.in_([chunk.first_ledger, chunk.last_ledger])
                    )
                )
            }
            first, last = ends.get(chunk.first_ledger), ends.get(chunk.last_ledger)
            conn.execute(
                update(backfill_chunks)
                .where(backfill_chunks.c.id == chunk.id)
                .values(
                    state="done",
                    first_previous_hash=first.previous_hash if first is not None else None,
                    last_hash=last.hash if last is not None else None,
                    ledgers_written=ledgers_written,
                    events_written=events_written,
                    sources=sources,
                    error=None,
                    updated_at=datetime.now(UTC),
                )
            )
        return ledgers_written, events_written

    def fail(self, chunk_id: int, error: str, final: bool = True) -> None:
        """Record why a chunk failed: `final` when it will not be tried again, else it waits
        for its retry as pending."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(backfill_chunks)
                .where(backfill_chunks.c.id == chunk_id)
                .values(
                    state="failed" if final else "pending",
                    error=error,
                    updated_at=datetime.now(UTC),
                )
            )

    def stitch(self, run_id: int) -> Stitch:
        """Move the run's mark over every done chunk that chains to the one before it (the
        first to the stored ledger before the run, the last into the one after it)."""
        with write_transaction(self.engine) as conn:
            run = conn.execute(
                select(backfill_runs).where(backfill_runs.c.id == run_id).with_for_update()
            ).one()
            rows = conn.execute(
                select(backfill_chunks)
                .where(backfill_chunks.c.run_id == run_id)
                .order_by(backfill_chunks.c.first_ledger)
            ).all()
            hashes = {
                int(r.sequence): r
                for r in conn.execute(
                    select(ledgers.c.sequence, ledgers.c.hash, ledgers.c.previous_hash).where(
                        ledgers.c.sequence.in_([run.first_ledger - 1, run.last_ledger + 1])
                    )
                )
            }
            before, after = hashes.get(run.first_ledger - 1), hashes.get(run.last_ledger + 1)
            mark, previous = run.first_ledger - 1, before.hash if before is not None else None
            result: Stitch | None = None
            for row in rows:
                if row.state != "done" or row.last_hash is None:
                    break
                if previous is not None and row.first_previous_hash != previous:
                    result = Stitch(mark, row.first_ledger, previous, row.first_previous_hash)
                    break
                mark, previous = row.last_ledger, row.last_hash
            if result is None and mark == run.last_ledger:
                if after is not None and after.previous_hash != previous:
                    result = Stitch(mark, mark + 1, previous, after.previous_hash)
                else:
                    result = Stitch(mark, complete=True)
            result = result or Stitch(mark)
            values: dict[str, Any] = {"verified_through": max(mark, run.verified_through)}
            if result.complete and run.finished_at is None:
                values["finished_at"] = datetime.now(UTC)
            conn.execute(update(backfill_runs).where(backfill_runs.c.id == run_id).values(**values))
        return result

    def summary(self, run_id: int) -> dict[str, Any]:
        """A run as /api/status and the reports show it: chunks by state, what was written,
        where it came from, and its mark."""
        with read_connection(self.engine) as conn:
            run = conn.execute(select(backfill_runs).where(backfill_runs.c.id == run_id)).one()
            rows = conn.execute(
                select(backfill_chunks)
                .where(backfill_chunks.c.run_id == run_id)
                .order_by(backfill_chunks.c.first_ledger)
            ).all()
        states = dict.fromkeys(CHUNK_STATES, 0)
        for row in rows:
            states[row.state] += 1
        done = [r for r in rows if r.state == "done"]
        return {
            "id": run.id,
            "first_ledger": run.first_ledger,
            "last_ledger": run.last_ledger,
            "chunk_ledgers": run.chunk_ledgers,
            "missing": run.missing,
            "chunks": states,
            "done_ledgers": sum(r.last_ledger - r.first_ledger + 1 for r in done),
            "ledgers_written": sum(r.ledgers_written for r in done),
            "events_written": sum(r.events_written for r in done),
            "sources": [s for r in done for s in r.sources],
            "errors": [
                {"first_ledger": r.first_ledger, "last_ledger": r.last_ledger, "error": r.error}
                for r in rows
                if r.state == "failed"
            ],
            "verified_contiguous_through": run.verified_through,
            "created_at": iso_utc(run.created_at),
            "finished_at": iso_utc(run.finished_at),
        }

    def latest_run(self) -> int | None:
        with read_connection(self.engine) as conn:
            value = conn.execute(select(func.max(backfill_runs.c.id))).scalar_one_or_none()
        return int(value) if value is not None else None

    def totals(self) -> tuple[dict[str, int], int]:
        """Chunks of every run by state, and ledgers written by backfill chunks, for metrics."""
        with read_connection(self.engine) as conn:
            by_state: dict[str, int] = dict(
                conn.execute(
                    select(backfill_chunks.c.state, func.count()).group_by(backfill_chunks.c.state)
                ).all()
            )
            written = conn.execute(
                select(func.coalesce(func.sum(backfill_chunks.c.ledgers_written), 0))
            ).scalar_one()
        return {s: int(by_state.get(s, 0)) for s in CHUNK_STATES}, int(written)
