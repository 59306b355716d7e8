"""Bulk inserts: what `conn.execute(insert(table), rows)` stores, without its per-row cost.

Catch-up writes thousands of events per batch. Through SQLAlchemy's executemany every
row is a dict that the compiler walks column by column, and that bookkeeping cost more than
the database's own work (docs/benchmarks.md has the profile). Here the rows go to the
database through the cheapest door each one has:

- PostgreSQL: one binary `COPY ... FROM STDIN` per table, through psycopg 3 on the
  transaction's own connection. Measured on 100,000 events against batched multi-row
  INSERTs and INSERT ... SELECT unnest(...): COPY was 3 to 7 times faster.
- SQLite: one executemany of ready tuples, inside the caller's transaction.
- any other database: SQLAlchemy's own insert.

Every value still goes through its column type's SQLAlchemy bind processor (or an exact
shortcut of it, see Converters), so both paths store identical rows; tests/unit/
test_store_bulk.py compares them byte for byte. Driver errors are raised as SQLAlchemy's
exceptions (IntegrityError, OperationalError, ...), as `conn.execute` raises them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any

from psycopg.adapt import Dumper
from psycopg.postgres import types as postgres_types
from psycopg.pq import Format
from sqlalchemy import Connection, Table, insert
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from stellar_reconciler.models import Event
from stellar_reconciler.store.schema import events

Row = Mapping[str, Any]
# The SQL type name without its modifiers: "VARCHAR(32)" -> "varchar".
_TYPE_MODIFIERS = re.compile(r"\(.*\)")

# The events columns in the order event tuples are built below.
EVENT_COLUMNS = (
    "id",
    "ledger",
    "ledger_closed_at",
    "contract_id",
    "type",
    "name",
    "tx_hash",
    "transaction_index",
    "operation_index",
    "in_successful_contract_call",
    "topics_xdr",
    "value_xdr",
    "topics",
    "value",
)


# Bound parameters per IN (...) list: well under SQLite's and PostgreSQL's limits.
CHUNK = 2000


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def insert_events(conn: Connection, event_list: Sequence[Event]) -> None:
    """Insert events inside the caller's transaction: the rows `event_row` in repository.py
    describes, built straight into tuples because this is the hot table."""
    if not event_list:
        return
    convert = Converters(events, EVENT_COLUMNS, conn.dialect)
    closed_at = convert("ledger_closed_at")
    successful = convert("in_successful_contract_call")
    topics_xdr, topics, value = convert("topics_xdr"), convert("topics"), convert("value")
    rows = [
        (
            e.id,
            e.ledger,
            closed_at(e.ledger_closed_at),
            e.contract_id,
            e.type,
            e.name[:64] if e.name else None,
            e.tx_hash,
            e.transaction_index,
            e.operation_index,
            successful(e.in_successful_contract_call),
            topics_xdr(list(e.topics_xdr)),
            e.value_xdr,
            topics(list(e.topics)),
            value(e.value),
        )
        for e in event_list
    ]
    _write(conn, events, EVENT_COLUMNS, rows)


def insert_many(conn: Connection, table: Table, rows: Sequence[Row]) -> None:
    """Insert `rows` (dicts keyed by column name, all with the same keys) into any table,
    inside the caller's transaction."""
    if not rows:
        return
    columns = _column_names(table, rows[0])
    convert = Converters(table, columns, conn.dialect)
    getter = itemgetter(*columns)
    # itemgetter of one name returns the value itself, of several a tuple.
    extracted = map(getter, rows) if len(columns) > 1 else ((getter(row),) for row in rows)
    values: list[Sequence[Any]] = list(zip(*extracted, strict=True))
    for position, name in enumerate(columns):
        if convert.converts(name):
            values[position] = list(map(convert(name), values[position]))
    _write(conn, table, columns, list(zip(*values, strict=True)))


def _column_names(table: Table, first: Row) -> tuple[str, ...]:
    """The table's columns that the rows carry, in table order; unknown keys are refused as
    SQLAlchemy refuses them, rather than silently dropped."""
    names = [column.name for column in table.columns]
    unknown = set(first) - set(names)
    if unknown:
        raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
    return tuple(name for name in names if name in first)


def _write(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Send rows whose values the driver can take as they are."""
    if conn.dialect.name == "postgresql":
        _copy(conn, table, columns, rows)
    elif conn.dialect.paramstyle == "qmark":
        quote = conn.dialect.identifier_preparer.quote
        # Only schema names go into the text, quoted by the dialect; values are parameters.
        statement = (
            f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        # exec_driver_sql skips compilation but keeps SQLAlchemy's error wrapping and events.
        conn.exec_driver_sql(statement, rows)
    else:
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


@contextmanager
def _as_sqlalchemy_errors(conn: Connection, statement: str) -> Iterator[None]:
    """Raise driver errors the way `conn.execute` does: wrapped in SQLAlchemy's classes, so
    callers catch IntegrityError or OperationalError whichever path wrote the rows."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc


@lru_cache(maxsize=64)
def _copy_types(table: Table, columns: tuple[str, ...], dialect: Dialect) -> tuple[str, ...]:
    """PostgreSQL type names for binary COPY, which needs each column's exact type."""
    compile_type = dialect.type_compiler_instance.process
    return tuple(
        _TYPE_MODIFIERS.sub("", compile_type(table.columns[name].type)).strip().lower()
        for name in columns
    )


class _JsonbText(Dumper):
    """JSONB in COPY's binary format from text made beforehand (see _postgres_json)."""

    format = Format.BINARY
    oid = postgres_types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()  # the JSONB format version, then the text


class _JsonText(Dumper):
    """JSON in COPY's binary format (the text itself) from text made beforehand."""

    format = Format.BINARY
    oid = postgres_types["json"].oid

    def dump(self, obj: str) -> bytes:
        return obj.encode()


def _copy(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    quote = conn.dialect.identifier_preparer.quote
    statement = (
        f"COPY {quote(table.name)} ({', '.join(map(quote, columns))}) FROM STDIN (FORMAT BINARY)"
    )
    types = _copy_types(table, columns, conn.dialect)
    # The transaction's own psycopg connection: the COPY commits or rolls back with the rest
    # of the batch.
    driver = conn.connection.driver_connection
    assert driver is not None
    with (
        _as_sqlalchemy_errors(conn, statement),
        driver.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        # Registered by type oid only, on this cursor only: used for the columns set_types
        # declares json or jsonb, whose values the converters turned into text.
        cursor.adapters.register_dumper(None, _JsonbText)
        cursor.adapters.register_dumper(None, _JsonText)
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# --- values as the driver receives them ----------------------------------------------------
#
# SQLAlchemy converts some values before handing them to the driver: datetimes to text on
# SQLite, JSON values to text (SQLite) or to psycopg's Jsonb wrapper (PostgreSQL), booleans
# after a check. `Converters` hands out those same bind processors, with two exact shortcuts
# where the processor's own overhead was most of the cost of a batch: JSON strings and lists
# of strings (event topics, most event values) are rendered without json.dumps, which sets up
# a new encoder for every value; and a batch's events share their ledgers' close times, so
# each distinct datetime is converted once.

Converter = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


class Converters:
    """The converter of each of `columns` of `table` on `dialect`; memoised converters keep
    what they saw, so make one per batch."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        self._plans = _plans(table, tuple(columns), dialect)

    def converts(self, column: str) -> bool:
        return column in self._plans

    def __call__(self, column: str) -> Converter:
        plan = self._plans.get(column)
        if plan is None:
            return _same
        processor, repeats = plan
        return _memoised(processor) if repeats else processor


@lru_cache(maxsize=64)
def _plans(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> dict[str, tuple[Converter, bool]]:
    """(converter, whether its values repeat) of each column SQLAlchemy would convert."""
    found: dict[str, tuple[Converter, bool]] = {}
    for name in columns:
        impl = table.columns[name].type.dialect_impl(dialect)
        processor = impl.bind_processor(dialect)
        if processor is None:
            continue
        converter: Converter = processor
        if isinstance(impl, sqltypes.JSON):
            converter = (
                _postgres_json(processor) if dialect.name == "postgresql" else _text_json(processor)
            )
        found[name] = (converter, isinstance(impl, sqltypes.DateTime))
    return found


def fast_json(value: Any) -> str | None:
    """json.dumps(value) for a string or a list of strings, None for anything else."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is list:
        try:
            return f"[{', '.join(map(encode_basestring_ascii, value))}]"
        except TypeError:  # an item that is not a string
            return None
    return None


# Values on which a serializer with json.dumps's defaults (ASCII escapes, ", " between items)
# renders differently from one with other settings; see _text_json.
_JSON_PROBES: tuple[Any, ...] = (["a", '\u00e9"\\\n\t\u2028'], '\u00e9"\n', [], "")


def _text_json(processor: Converter) -> Converter:
    """A JSON processor that returns text (SQLite's), with fast_json for the shapes it
    covers; anything else, and every sentinel, still goes to `processor`.

    Used only when `processor` renders the probe values exactly as fast_json does, which
    holds for json.dumps's defaults, so a serializer configured on the engine is never
    bypassed.
    """

    def convert(value: Any) -> Any:
        text = fast_json(value)
        return processor(value) if text is None else text

    if all(convert(probe) == processor(probe) for probe in _JSON_PROBES):
        return convert
    return processor


def _postgres_json(processor: Converter) -> Converter:
    """SQLAlchemy's JSONB processor wraps each value in psycopg's Jsonb, whose dumper then
    runs json.dumps in Python during the COPY. Here the text is made up front instead (with
    the wrapper's own serializer when the engine configures one) and _JsonbText copies it
    as it is; SQL NULL stays None. JSONB stores the parsed value, so only the value counts."""

    def convert(value: Any) -> Any:
        wrapped = processor(value)
        if wrapped is None:
            return None
        if wrapped.dumps is not None:
            return wrapped.dumps(wrapped.obj)
        text = fast_json(wrapped.obj)
        return json.dumps(wrapped.obj) if text is None else text

    return convert


def _memoised(processor: Converter) -> Converter:
    """`processor` computing each distinct value once. Keys carry the UTC offset as well:
    equal instants in different zones are equal datetimes but may convert differently."""
    done: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        key = (value, value.utcoffset()) if isinstance(value, datetime) else value
        found = done.get(key, done)
        if found is done:
            found = done[key] = processor(value)
        return found

    return convert
