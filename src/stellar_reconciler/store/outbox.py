"""Outbox: what the NATS publisher still has to send, written with the rows it names.

A batch's events are recorded here inside the batch's own transaction, so an event is stored
and queued for publishing together or not at all; a crash between the two cannot happen.
The publisher reads the queue in `seq` order and deletes what JetStream acknowledged. Events are
named by id: their body is made at send time by the database itself, as JSON text from the
stored columns (`_event_body`), so the publisher's process does next to nothing per event:
building it in Python was most of the publisher's time once acknowledgements were cheap.
Recording is off (nothing is queued) unless NATS_URL is set, or the table would only grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Text, and_, case, cast, delete, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from stellar_reconciler.models import Event
from stellar_reconciler.store.bulk import chunks, insert_many
from stellar_reconciler.store.database import read_connection, write_transaction
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
                _event_body(self.engine.dialect.name).label("body"),
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


def _event_body(dialect: str) -> ColumnElement[str]:
    """An events row as the JSON API shows it (store.repository.event_json), as compact JSON
    text made by the database: the same document as event_text makes, though characters
    outside ASCII may be written as themselves rather than escaped."""
    if dialect == "postgresql":

        def quoted(column: ColumnElement[str]) -> ColumnElement[str]:
            return cast(func.to_json(column), Text)

        utc = func.timezone("UTC", events.c.ledger_closed_at)
        whole = func.date_trunc("second", utc) == utc
        closed = (
            func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS')
            + case((whole, ""), else_=func.to_char(utc, ".US"))
            + "Z"
        )
    else:

        def quoted(column: ColumnElement[str]) -> ColumnElement[str]:
            return func.json_quote(column)

        # SQLAlchemy stores a time on SQLite as "YYYY-MM-DD HH:MM:SS.ffffff", in UTC here.
        stored = cast(events.c.ledger_closed_at, Text)
        fraction = func.substr(stored, 21, 6)
        closed = (
            func.replace(func.substr(stored, 1, 19), " ", "T")
            + case((fraction.in_(["", "000000"]), ""), else_="." + fraction)
            + "Z"
        )
    parts: list[ColumnElement[str]] = [
        literal('{"id":'),
        quoted(events.c.id),
        literal(',"ledger":'),
        cast(events.c.ledger, Text),
        literal(',"ledger_closed_at":'),
        quoted(closed),
        literal(',"contract_id":'),
        quoted(events.c.contract_id),
        literal(',"type":'),
        quoted(events.c.type),
        literal(',"name":'),
        func.coalesce(quoted(events.c.name), "null"),
        literal(',"tx_hash":'),
        quoted(events.c.tx_hash),
        literal(',"topics":'),
        cast(events.c.topics, Text),
        literal(',"value":'),
        func.coalesce(cast(events.c.value, Text), "null"),
        literal(',"topics_xdr":'),
        cast(events.c.topics_xdr, Text),
        literal(',"value_xdr":'),
        quoted(events.c.value_xdr),
        literal("}"),
    ]
    body = parts[0]
    for part in parts[1:]:
        body = body + part
    return body
