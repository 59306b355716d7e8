"""Outbox: what the NATS publisher still has to send, written with the rows it names.

A batch's events are recorded here inside the batch's own transaction, so an event is stored
and queued for publishing together or not at all; a crash between the two cannot happen.
The publisher reads the queue in `seq` order and deletes what JetStream acknowledged. Events are
named by id: their body is made at send time by the database itself, as JSON text from the
stored columns (`store/event_json.py`), so the publisher's process does next to nothing per event:
building it in Python was most of the publisher's time once acknowledgements were cheap.
Recording is off (nothing is queued) unless NATS_URL is set, or the table would only grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, delete, func, select

from stellar_reconciler.models import Event
from stellar_reconciler.store.bulk import chunks, insert_many
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.event_json import event_body
from stellar_reconciler.store.schema import events, publish_outbox

# The one kind queued so far; discrepancies carry their own mark (published_at).
EVENT = "event"


@dataclass(frozen=True, slots=True)
class Publication:
    """One queued message: its place in the queue, what it is, where it goes, its JSON body."""

    seq: int
    kind: str
    ref: str
    # The body as compact JSON; None for an event deleted since it was queued (a repair
    # replaced its ledger).
    body: bytes | None
    # The event's contract and name, for its subject (None when the body is).
    contract_id: str | None = None
    name: str | None = None


class Outbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Set by the service when NATS_URL is configured.
        self.enabled = False

    def add_events(self, conn: Connection, event_list: Iterable[Event]) -> None:
        """Queue events for publishing, inside the caller's transaction (the one storing them)."""
        if not self.enabled:
            return
        rows = [{"kind": EVENT, "ref": event.id} for event in event_list]
        if rows:
            insert_many(conn, publish_outbox, rows)

    def pending(self, limit: int, after: int = 0) -> list[Publication]:
        """The oldest `limit` queued messages after `after`, in queue order, with their bodies."""
        query = (
            select(
                publish_outbox.c.seq,
                publish_outbox.c.kind,
                publish_outbox.c.ref,
                events.c.id,
                events.c.contract_id,
                events.c.name,
                event_body(self.engine.dialect.name).label("body"),
            )
            .select_from(
                publish_outbox.outerjoin(
                    events,
                    and_(publish_outbox.c.kind == EVENT, events.c.id == publish_outbox.c.ref),
                )
            )
            .where(publish_outbox.c.seq > after)
            .order_by(publish_outbox.c.seq)
            .limit(limit)
        )
        with read_connection(self.engine) as conn:
            rows = conn.execute(query).all()
        return [
            Publication(int(seq), kind, ref, None)
            if event_id is None
            else Publication(int(seq), kind, ref, body.encode(), contract_id, name)
            for seq, kind, ref, event_id, contract_id, name, body in rows
        ]

    def mark_sent(self, seqs: Sequence[int]) -> None:
        """Forget messages JetStream has acknowledged."""
        if not seqs:
            return
        with write_transaction(self.engine) as conn:
            for chunk in chunks(seqs):
                conn.execute(delete(publish_outbox).where(publish_outbox.c.seq.in_(list(chunk))))

    def pending_count(self) -> int:
        with read_connection(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(publish_outbox)).scalar_one())
