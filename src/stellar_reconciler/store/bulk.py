"""Bulk inserts: what `conn.execute(insert(table), rows)` does, without its per-row cost.

Catch-up writes about ten thousand events per batch. Through SQLAlchemy's executemany every
row is a dict that the compiler walks column by column; that bookkeeping cost more than the
database's own work (see docs/benchmarks.md). Here the same rows go to the database through
the cheapest door each one has:

- PostgreSQL: one binary `COPY ... FROM STDIN` per table, through psycopg 3 on the
  transaction's own connection (measured against batched multi-row INSERTs and INSERT ...
  SELECT unnest(...): COPY was 3 to 7 times faster).
- SQLite: one executemany of prepared tuples, inside the caller's transaction.
- anything else: SQLAlchemy's own insert.

Values go through each column type's SQLAlchemy bind processor, exactly as the ORM-free
insert would send them, so both paths store identical rows: JSON `null` for a JSON column
given None, SQLite's datetime text, JSONB through psycopg's `Jsonb`. Driver errors are raised
as SQLAlchemy's exceptions (IntegrityError, OperationalError, ...), as `conn.execute` would.
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

Row = Mapping[str, Any]
Processor = Callable[[Any], Any]
# The SQL type name without its modifiers: "VARCHAR(32)" -> "varchar".
_TYPE_MODIFIERS = re.compile(r"\(.*\)")


def insert_many(conn: Connection, table: Table, rows: Sequence[Row]) -> None:
    """Insert `rows` (dicts keyed by column name, all with the same keys) into `table`,
    inside the caller's transaction."""
    if not rows:
        return
    dialect = conn.dialect
    columns = _column_names(table, rows[0])
    if dialect.name == "postgresql":
        _copy(conn, table, columns, rows)
    elif dialect.paramstyle == "qmark":
        _executemany(conn, table, columns, rows)
    else:
        conn.execute(insert(table), list(rows))


def _column_names(table: Table, first: Row) -> tuple[str, ...]:
    """The table's columns that the rows carry, in table order; unknown keys are refused as
    SQLAlchemy refuses them, rather than silently dropped."""
    names = [column.name for column in table.columns]
    unknown = set(first) - set(names)
    if unknown:
        raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
    return tuple(name for name in names if name in first)


@lru_cache(maxsize=64)
def _conversions(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[tuple[int, Processor, bool], ...]:
    """(position, bind processor, whether its values repeat) of each column SQLAlchemy would
    convert before handing it to the driver."""
    found = []
    for position, name in enumerate(columns):
        impl = table.columns[name].type.dialect_impl(dialect)
        bind_processor = impl.bind_processor(dialect)
        if bind_processor is None:
            continue
        processor: Processor = bind_processor
        if isinstance(impl, sqltypes.JSON):
            processor = (
                _postgres_json(processor)
                if dialect.name == "postgresql"
                else _sqlite_json(processor)
            )
        # A batch's events share their ledgers' close times.
        found.append((position, processor, isinstance(impl, sqltypes.DateTime)))
    return tuple(found)


def _fast_json(value: Any) -> str | None:
    """json.dumps(value) for a string or a list of strings (event topics, most values),
    None for anything else. json.dumps sets up an encoder on every call, which costs
    several times the rendering of such small values."""
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
# differs from other settings; see _sqlite_json.
_JSON_PROBES: tuple[Any, ...] = (["a", '\u00e9"\\\n\t\u2028'], '\u00e9"\n', [], "")


def _sqlite_json(processor: Processor) -> Processor:
    """SQLAlchemy's JSON processor (which returns the JSON text), with _fast_json for the
    shapes it covers; anything else, and every sentinel, still goes to `processor`.

    Used only when `processor` renders the probe values exactly as the shortcut does, which
    holds for json.dumps's defaults, so a configured serializer is never bypassed.
    """

    def process(value: Any) -> Any:
        text = _fast_json(value)
        return processor(value) if text is None else text

    if all(process(probe) == processor(probe) for probe in _JSON_PROBES):
        return process
    return processor


def _postgres_json(processor: Processor) -> Processor:
    """SQLAlchemy's JSONB processor wraps each value in psycopg's Jsonb, whose dumper then
    runs json.dumps in Python during the COPY. Here the text is made up front instead (with
    the wrapper's own serializer when the engine configures one) and _JsonText copies it as
    it is; SQL NULL stays None. JSONB stores the parsed value, so only the value counts."""

    def process(value: Any) -> Any:
        wrapped = processor(value)
        if wrapped is None:
            return None
        if wrapped.dumps is not None:
            return wrapped.dumps(wrapped.obj)
        text = _fast_json(wrapped.obj)
        return json.dumps(wrapped.obj) if text is None else text

    return process


def _memoised(processor: Processor) -> Processor:
    """`processor` computing each distinct value once. Keys carry the UTC offset as well:
    equal instants in different zones are equal datetimes but may convert differently."""
    done: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        key = (value, value.utcoffset()) if isinstance(value, datetime) else value
        found = done.get(key, done)
        if found is done:
            found = done[key] = processor(value)
        return found

    return process


def _prepared(
    table: Table, columns: tuple[str, ...], rows: Sequence[Row], dialect: Dialect
) -> list[tuple[Any, ...]]:
    """The rows as tuples in `columns` order, each value as the driver should receive it.

    Works column by column: one `map` per converted column keeps the per-value cost to the
    processor call itself.
    """
    getter = itemgetter(*columns)
    # itemgetter of one name returns the value itself, of several a tuple.
    extracted = map(getter, rows) if len(columns) > 1 else ((getter(row),) for row in rows)
    values: list[Sequence[Any]] = list(zip(*extracted, strict=True))
    for position, processor, repeats in _conversions(table, columns, dialect):
        convert = _memoised(processor) if repeats else processor
        values[position] = list(map(convert, values[position]))
    return list(zip(*values, strict=True))


@contextmanager
def _as_sqlalchemy_errors(conn: Connection, statement: str) -> Iterator[None]:
    """Raise driver errors the way `conn.execute` does: wrapped in SQLAlchemy's classes, so
    callers catch IntegrityError or OperationalError whichever path wrote the rows."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc


def _executemany(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Row]
) -> None:
    quote = conn.dialect.identifier_preparer.quote
    # Only schema names go into the text, quoted by the dialect; the values are parameters.
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    # exec_driver_sql skips compilation but keeps SQLAlchemy's error wrapping and events.
    conn.exec_driver_sql(statement, _prepared(table, columns, rows, conn.dialect))


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


def _copy(conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Row]) -> None:
    quote = conn.dialect.identifier_preparer.quote
    statement = (
        f"COPY {quote(table.name)} ({', '.join(map(quote, columns))}) FROM STDIN (FORMAT BINARY)"
    )
    prepared = _prepared(table, columns, rows, conn.dialect)
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
        # declares json or jsonb, whose values _postgres_json turned into text.
        cursor.adapters.register_dumper(None, _JsonbText)
        cursor.adapters.register_dumper(None, _JsonText)
        copy.set_types(types)
        for row in prepared:
            copy.write_row(row)
