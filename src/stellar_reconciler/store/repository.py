"""Store: one method per named query over ledgers, events and checkpoints.

The invariant everything else leans on lives in `commit_batch`: a batch's events, its ledger
rows and the checkpoint move in one transaction, and the checkpoint moves only from the
ledger just before the batch (compare-and-set). A crash, a retry or a second writer can
therefore never leave a gap or a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select

from stellar_reconciler.errors import (
    CheckpointConflictError,
    NothingStoredError,
    StreamMismatchError,
)
from stellar_reconciler.models import Batch, Checkpoint, Event, LedgerRecord, as_utc, iso_utc
from stellar_reconciler.reconcile import EventFingerprint, Range
from stellar_reconciler.store import migrate
from stellar_reconciler.store.checkpoint import advance
from stellar_reconciler.store.chunks import Chunks
from stellar_reconciler.store.consents import GapConsents
from stellar_reconciler.store.database import (
    create_database_engine,
    is_sqlite,
    read_connection,
    sqlite_path,
    write_transaction,
)
from stellar_reconciler.store.discrepancies import AuditLog, Discrepancies, NewDiscrepancy
from stellar_reconciler.store.event_json import event_body
from stellar_reconciler.store.expectations import Expectations
from stellar_reconciler.store.explanations import Explanations
from stellar_reconciler.store.gaps import Gaps
from stellar_reconciler.store.groups import ExpectationGroups
from stellar_reconciler.store.lifecycle import Lifecycle
from stellar_reconciler.store.network import NetworkRecord
from stellar_reconciler.store.outbox import Outbox
from stellar_reconciler.store.outcomes import TxOutcomes
from stellar_reconciler.store.periods import Periods
from stellar_reconciler.store.schema import (
    checkpoints,
    events,
    ledgers,
)

DEFAULT_STREAM = "events"

# Work that must commit or roll back together with a batch (matching expectations, say):
# called inside the batch's transaction, after its rows are written.
BatchHook = Callable[[Connection, Batch], None]


def event_row(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "ledger": event.ledger,
        "ledger_closed_at": event.ledger_closed_at,
        "contract_id": event.contract_id,
        "type": event.type,
        "name": event.name[:64] if event.name else None,
        "tx_hash": event.tx_hash,
        "transaction_index": event.transaction_index,
        "operation_index": event.operation_index,
        "in_successful_contract_call": event.in_successful_contract_call,
        "topics_xdr": list(event.topics_xdr),
        "value_xdr": event.value_xdr,
        "topics": list(event.topics),
        "value": event.value,
    }


def ledger_row(ledger: LedgerRecord) -> dict[str, Any]:
    return {
        "sequence": ledger.sequence,
        "hash": ledger.hash,
        "previous_hash": ledger.previous_hash,
        "closed_at": ledger.closed_at,
        "event_count": ledger.event_count,
    }


def event_json(row: Any) -> dict[str, Any]:
    """An events row as the JSON API shows it."""
    return {
        "id": row.id,
        "ledger": row.ledger,
        "ledger_closed_at": iso_utc(row.ledger_closed_at),
        "contract_id": row.contract_id,
        "type": row.type,
        "name": row.name,
        "tx_hash": row.tx_hash,
        "topics": row.topics,
        "value": row.value,
        "topics_xdr": row.topics_xdr,
        "value_xdr": row.value_xdr,
    }


def _event_conditions(query: EventQuery) -> list[Any]:
    conditions: list[Any] = []
    if query.contract_id is not None:
        conditions.append(events.c.contract_id == query.contract_id)
    if query.name is not None:
        conditions.append(events.c.name == query.name)
    if query.from_ledger is not None:
        conditions.append(events.c.ledger >= query.from_ledger)
    if query.to_ledger is not None:
        conditions.append(events.c.ledger <= query.to_ledger)
    if query.after_id is not None:
        after = events.c.id < query.after_id if query.descending else events.c.id > query.after_id
        conditions.append(after)
    return conditions


def ledger_from_row(row: Any) -> LedgerRecord:
    return LedgerRecord(
        sequence=row.sequence,
        hash=row.hash,
        previous_hash=row.previous_hash,
        closed_at=as_utc(row.closed_at),
        event_count=row.event_count,
    )


def _check_fingerprint(stored: str, configured: str) -> None:
    if stored != configured:
        raise StreamMismatchError(
            "this database was indexed with other CONTRACT_IDS/EVENT_TOPICS; point "
            "DATABASE_URL at a new database, or restore the settings it was filled with"
        )


@dataclass(frozen=True, slots=True)
class EventQuery:
    contract_id: str | None = None
    name: str | None = None
    from_ledger: int | None = None
    to_ledger: int | None = None
    after_id: str | None = None
    limit: int = 100
    # Newest first: the cursor then means "older than this id".
    descending: bool = False


class Store:
    """Everything the service reads and writes, on SQLite or PostgreSQL alike."""

    def __init__(
        self, engine: Engine, stream: str = DEFAULT_STREAM, application_name: str | None = None
    ) -> None:
        self.engine = engine
        self.stream = stream
        # What this replica's PostgreSQL sessions are called (see store/lease.py); a helper
        # process that writes for the replica opens its store under the same name.
        self.application_name = application_name
        self.discrepancies = Discrepancies(engine)
        self.audit = AuditLog(engine)
        self.gaps = Gaps(engine, stream, self.discrepancies)
        self.consents = GapConsents(engine, stream, self.discrepancies, self.audit)
        self.expectations = Expectations(engine, self.discrepancies, stream)
        self.outcomes = TxOutcomes(engine, stream)
        self.lifecycle = Lifecycle(self.expectations)
        self.groups = ExpectationGroups(engine)
        self.network = NetworkRecord(engine)
        self.outbox = Outbox(engine)
        self.periods = Periods(engine, stream, self.discrepancies)
        self.explanations = Explanations(engine, stream)
        self.chunks = Chunks(engine, self._replace_rows)

    @classmethod
    def open(
        cls, url: str, stream: str = DEFAULT_STREAM, *, application_name: str | None = None
    ) -> Store:
        engine = create_database_engine(url, application_name=application_name)
        return cls(engine, stream, application_name)

    @classmethod
    def open_existing(cls, url: str, stream: str = DEFAULT_STREAM) -> Store:
        """Open a database for a read-only command: never create a file or a table.

        NothingStoredError when there is no database (or no schema in it), SchemaOutdatedError
        when it needs `reconciler migrate` first.
        """
        path = sqlite_path(url)
        if path is not None and not Path(path).is_file():
            raise NothingStoredError(
                f"no database at {Path(path).resolve()}: nothing is stored yet (set "
                "DATABASE_URL to the service's database, or start the service first)"
            )
        store = cls.open(url, stream)
        try:
            migrate.require_current(store.engine)
        except BaseException:
            store.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: no other process can open it."""
        return self.dialect == "sqlite" and sqlite_path(str(self.engine.url)) is None

    def migrate(self) -> None:
        migrate.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- checkpoint ----------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(checkpoints).where(checkpoints.c.stream == self.stream)
            ).one_or_none()
        if row is None:
            return Checkpoint(self.stream, None)
        return Checkpoint(self.stream, row.ledger, as_utc(row.updated_at))

    def ensure_stream(self, start_ledger: int, fingerprint: str) -> int:
        """Create this stream's checkpoint just before `start_ledger` if the database is new.

        Returns the checkpoint. Raises StreamMismatchError when the database was filled with other
        filters, because mixing two filters' events in one history would be silently wrong.
        """
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(checkpoints).where(checkpoints.c.stream == self.stream)
            ).one_or_none()
            if row is None:
                conn.execute(
                    insert(checkpoints).values(
                        stream=self.stream,
                        ledger=start_ledger - 1,
                        filter_fingerprint=fingerprint,
                        updated_at=datetime.now(UTC),
                    )
                )
                return start_ledger - 1
            _check_fingerprint(row.filter_fingerprint, fingerprint)
            return int(row.ledger)

    def check_stream(self, fingerprint: str) -> None:
        """Raise StreamMismatchError when the database was filled with other filters; writes
        nothing, so start-up can refuse before anything else happens."""
        with read_connection(self.engine) as conn:
            stored = conn.execute(
                select(checkpoints.c.filter_fingerprint).where(checkpoints.c.stream == self.stream)
            ).scalar_one_or_none()
        if stored is not None:
            _check_fingerprint(stored, fingerprint)

    # --- markers: other positions kept beside the checkpoint (e.g. verified through) ---------

    def marker(self, name: str) -> int | None:
        with read_connection(self.engine) as conn:
            value = conn.execute(
                select(checkpoints.c.ledger).where(checkpoints.c.stream == f"{self.stream}:{name}")
            ).scalar_one_or_none()
        return int(value) if value is not None else None

    def move_marker(self, name: str, expected: int | None, new: int) -> None:
        """Compare-and-set a marker; creates it when `expected` is None."""
        stream = f"{self.stream}:{name}"
        with write_transaction(self.engine) as conn:
            if expected is None:
                conn.execute(
                    insert(checkpoints).values(
                        stream=stream,
                        ledger=new,
                        filter_fingerprint="marker",
                        updated_at=datetime.now(UTC),
                    )
                )
                return
            advance(conn, stream, expected, new)

    # --- batches -------------------------------------------------------------------------

    def commit_batch(self, batch: Batch, hooks: Sequence[BatchHook] = ()) -> None:
        """Write a batch's events and ledgers and move the checkpoint, in one transaction;
        `hooks` run inside that transaction, so their writes share its fate."""
        with write_transaction(self.engine) as conn:
            # The checkpoint first: on PostgreSQL its row lock makes a second writer wait
            # here and then fail the compare-and-set, before it has written anything.
            advance(conn, self.stream, batch.first_ledger - 1, batch.last_ledger)
            self.insert_rows(conn, batch.ledgers, batch.events)
            self.outbox.add_events(conn, batch.events)
            for hook in hooks:
                hook(conn, batch)

    def insert_rows(
        self, conn: Connection, ledger_records: Sequence[LedgerRecord], event_list: Sequence[Event]
    ) -> None:
        """Write the rows in bulk (COPY on PostgreSQL), inside the caller's transaction."""
        from stellar_reconciler.store.bulk import insert_events, insert_many

        if ledger_records:
            insert_many(conn, ledgers, [ledger_row(x) for x in ledger_records])
        insert_events(conn, event_list)

    def rebase_empty_stream(self, expected: int, new: int) -> bool:
        """Move the checkpoint of a stream that has committed nothing yet; False otherwise."""
        with write_transaction(self.engine) as conn:
            if conn.execute(select(ledgers.c.sequence).limit(1)).first() is not None:
                return False
            advance(conn, self.stream, expected, new)
        return True

    # --- ledgers -------------------------------------------------------------------------

    def ledger(self, sequence: int) -> LedgerRecord | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(select(ledgers).where(ledgers.c.sequence == sequence)).one_or_none()
        return ledger_from_row(row) if row is not None else None

    def list_ledgers(
        self, from_ledger: int | None, to_ledger: int | None, limit: int
    ) -> list[LedgerRecord]:
        query = select(ledgers).order_by(ledgers.c.sequence).limit(limit)
        if from_ledger is not None:
            query = query.where(ledgers.c.sequence >= from_ledger)
        if to_ledger is not None:
            query = query.where(ledgers.c.sequence <= to_ledger)
        with read_connection(self.engine) as conn:
            return [ledger_from_row(r) for r in conn.execute(query)]

    def ledger_bounds(self) -> tuple[int | None, int | None, int]:
        """(first stored ledger, last stored ledger, number of stored ledgers)."""
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(
                    func.min(ledgers.c.sequence), func.max(ledgers.c.sequence), func.count()
                ).select_from(ledgers)
            ).one()
        return row[0], row[1], int(row[2])

    # --- events --------------------------------------------------------------------------

    def list_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Events in ledger and id order, or newest first (an id's text order is ledger order)."""
        order = events.c.id.desc() if query.descending else events.c.id
        statement = select(events).where(*_event_conditions(query)).order_by(order)
        with read_connection(self.engine) as conn:
            return [event_json(r) for r in conn.execute(statement.limit(query.limit))]

    def event_texts(self, query: EventQuery) -> list[tuple[str, str]]:
        """(id, the event as JSON text on one line, the document event_json makes) in id
        order, for pushing many events out: the database writes the text (event_json.py)."""
        statement = (
            select(events.c.id, event_body(self.dialect))
            .where(*_event_conditions(query))
            .order_by(events.c.id)
            .limit(query.limit)
        )
        with read_connection(self.engine) as conn:
            return [(event_id, text) for event_id, text in conn.execute(statement)]

    def event_count(self) -> int:
        with read_connection(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    # --- reconciliation ------------------------------------------------------------------

    def fingerprints(self, first: int, last: int) -> list[EventFingerprint]:
        """The stored events of first..last in the form the verifier compares."""
        query = (
            select(
                events.c.id,
                events.c.ledger,
                events.c.contract_id,
                events.c.type,
                events.c.tx_hash,
                events.c.topics_xdr,
                events.c.value_xdr,
            )
            .where(events.c.ledger.between(first, last))
            .order_by(events.c.id)
        )
        with read_connection(self.engine) as conn:
            return [
                EventFingerprint(
                    r.id,
                    r.ledger,
                    r.contract_id,
                    r.type,
                    r.tx_hash,
                    tuple(r.topics_xdr),
                    r.value_xdr,
                )
                for r in conn.execute(query)
            ]

    def ledger_hashes(self, first: int, last: int) -> dict[int, str]:
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(ledgers.c.sequence, ledgers.c.hash).where(
                    ledgers.c.sequence.between(first, last)
                )
            )
            return {int(seq): h for seq, h in rows}

    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    # --- repairs: re-indexing ranges behind the checkpoint ---------------------------------

    def replace_range(
        self,
        batch: Batch,
        hooks: Sequence[BatchHook] = (),
        discrepancy: NewDiscrepancy | None = None,
    ) -> None:
        """Re-index the batch's ledgers with its rows, in one transaction with its hooks and
        the discrepancy that records why (if any), so a repair and its record share one fate."""
        with write_transaction(self.engine) as conn:
            self._replace_rows(conn, batch, hooks)
            if discrepancy is not None:
                self.discrepancies.open(discrepancy, conn)

    def backfill_batch(self, batch: Batch, hooks: Sequence[BatchHook] = ()) -> bool:
        """Write a batch of ledgers missing from the store, behind the checkpoint, in one
        transaction with its hooks; False, writing nothing, when any of them is stored by now
        (a backfill never rewrites what is there)."""
        with write_transaction(self.engine) as conn:
            present = conn.execute(
                select(func.count())
                .select_from(ledgers)
                .where(ledgers.c.sequence.between(batch.first_ledger, batch.last_ledger))
            ).scalar_one()
            if present:
                return False
            self._replace_rows(conn, batch, hooks)
        return True

    def fill_gap(
        self, gap: Range, batch: Batch, hooks: Sequence[BatchHook] = (), events: int = 0
    ) -> None:
        """Write one batch of a missing range, in one transaction with its hooks and the gap's
        record: opened by the first batch, its `found` moved on by each, resolved by the one
        that reaches the gap's end. `events` counts the gap's events so far, this batch's
        included. The record is keyed by the gap's last ledger, so a fill that failed half-way
        is finished, and its record closed, by the next fill of what remains."""
        first, last = gap
        record = NewDiscrepancy(
            kind="gap",
            key=f"gap:through:{last}",
            message=f"ledgers {first}-{last} were missing from the database",
            first_ledger=first,
            last_ledger=last,
        )
        with write_transaction(self.engine) as conn:
            present = conn.execute(
                select(func.count())
                .select_from(ledgers)
                .where(ledgers.c.sequence.between(batch.first_ledger, batch.last_ledger))
            ).scalar_one()
            if present == len(batch.ledgers):
                # Filled meanwhile (a verify job and the periodic check can meet on one gap):
                # recording it again would open a record for a gap that is no longer there.
                return
            self._replace_rows(conn, batch, hooks)
            discrepancy_id, _ = self.discrepancies.open(record, conn)
            if batch.last_ledger < last:
                self.discrepancies.set_found(
                    discrepancy_id, {"filled_through": batch.last_ledger}, conn
                )
                return
            self.discrepancies.resolve(
                discrepancy_id,
                "auto",
                f"filled from the RPC, one transaction per batch: ledgers {first}-{last}, "
                f"{events} events, hash chain checked on both sides",
                conn,
            )

    def _replace_rows(self, conn: Connection, batch: Batch, hooks: Sequence[BatchHook]) -> None:
        """The batch's ledgers hold exactly its rows afterwards. The range must already be
        behind the checkpoint, so the worker never writes there at the same time."""
        checkpoint = conn.execute(
            select(checkpoints.c.ledger).where(checkpoints.c.stream == self.stream)
        ).scalar_one_or_none()
        if checkpoint is None or batch.last_ledger > checkpoint:
            raise CheckpointConflictError(self.stream, batch.last_ledger, checkpoint)
        first, last = batch.first_ledger, batch.last_ledger
        # Events stored before were published (or queued) then: only new ones are queued.
        known: set[str] = set()
        if self.outbox.enabled:
            known = set(
                conn.execute(
                    select(events.c.id).where(events.c.ledger.between(first, last))
                ).scalars()
            )
        # Events of a missing ledger row may survive it; the fresh read replaces them.
        conn.execute(delete(events).where(events.c.ledger.between(first, last)))
        conn.execute(delete(ledgers).where(ledgers.c.sequence.between(first, last)))
        self.insert_rows(conn, batch.ledgers, batch.events)
        self.outbox.add_events(conn, (e for e in batch.events if e.id not in known))
        for hook in hooks:
            hook(conn, batch)
        # A closed period's roots are compared in the repair's transaction: the change and
        # its record commit together or not at all.
        self.periods.after_repair(conn, first, last)
