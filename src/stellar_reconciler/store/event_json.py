"""The event document as JSON text, made by the database: what the publisher sends and the
event stream pushes.

Both send many events at once, and building each document in Python (a dict, then
json.dumps, or even a hand-built string) was most of what reading them cost; the database
writes the same document from the stored columns, their JSON passing through as stored.
"""

from __future__ import annotations

from sqlalchemy import Text, case, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

from stellar_reconciler.store.schema import events


def event_body(dialect: str) -> ColumnElement[str]:
    """An events row as the JSON API shows it (store.repository.event_json), as compact JSON
    text on one line made by the database; characters outside ASCII may be written as
    themselves rather than escaped."""
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
