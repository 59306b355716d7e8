"""Engines for SQLite and PostgreSQL behind one code path, and the one way to write.

SQLite runs in WAL mode so the API can read while the worker writes; a write transaction
takes the database's write lock up front (BEGIN IMMEDIATE) so two writers queue instead of
failing half-way. PostgreSQL needs nothing special: row locks on the checkpoint serialise
writers, and its default isolation is enough for the compare-and-set.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from stellar_reconciler.errors import DatabaseUnavailableError

# How long a SQLite writer queues for the file's write lock before giving up with
# DatabaseUnavailableError. Long enough for any one transaction of ours on a busy machine.
SQLITE_LOCK_WAIT_SECS = 30


def create_database_engine(
    url: str, *, pool_size: int = 5, application_name: str | None = None
) -> Engine:
    """An engine for `url` (SQLAlchemy form: sqlite:///... or postgresql+psycopg://...);
    on PostgreSQL its sessions carry `application_name` (see store/lease.py)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_LOCK_WAIT_SECS},
            pool_size=pool_size,
            max_overflow=10,
        )
        _tune_sqlite(engine, SQLITE_LOCK_WAIT_SECS)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"application_name": application_name} if application_name else {},
    )


def _enter_wal_mode(cursor: Any, lock_wait_secs: int) -> None:
    """Switch a new file to WAL, queueing like any writer when others are opening it too.

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without
    its busy wait, when another connection is mid-switch: several processes opening one new file
    at the same instant then failed at random. So the wait is done here, within the same bound."""
    deadline = time.monotonic() + lock_wait_secs
    pause = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _tune_sqlite(engine: Engine, lock_wait_secs: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin hook below emit BEGIN itself (pysqlite's own is too late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={lock_wait_secs * 1000:d}")
        _enter_wal_mode(cursor, lock_wait_secs)
        # NORMAL in WAL mode survives a killed process; only a power cut can lose the last
        # commits, and then whole transactions, never half of one.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def unavailable(engine: Engine, exc: Exception) -> DatabaseUnavailableError:
    first_line = str(getattr(exc, "orig", exc)).strip().splitlines()[0:1] or ["no detail"]
    where = engine.url.render_as_string(hide_password=True)
    if "database is locked" in first_line[0]:
        # SQLite is a file, not a server: "check that it is running" would mislead.
        return DatabaseUnavailableError(
            f"database {where} stayed locked by another process for "
            f"{SQLITE_LOCK_WAIT_SECS} s; check whether "
            "another `reconciler` command is writing to the same file"
        )
    return DatabaseUnavailableError(
        f"database {where} is unavailable ({first_line[0]}); check that it is running and "
        "that DATABASE_URL is right"
    )


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that commits whole or rolls back whole."""
    try:
        with engine.connect().execution_options(write=True) as connection, connection.begin():
            yield connection
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine, exc) from exc


@contextmanager
def rolled_back_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction that is always rolled back: a dry run sees what it would write."""
    try:
        with (
            engine.connect().execution_options(write=True) as connection,
            connection.begin() as transaction,
        ):
            yield connection
            transaction.rollback()
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine, exc) from exc


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    try:
        with engine.connect() as connection, connection.begin():
            yield connection
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine, exc) from exc


@contextmanager
def snapshot_connection(engine: Engine) -> Iterator[Connection]:
    """A read transaction whose every statement sees the same committed state: several
    queries that must agree (a proof's headers, events and records) read one snapshot. SQLite
    in WAL mode gives that to any read transaction; PostgreSQL needs REPEATABLE READ."""
    try:
        with engine.connect() as connection:
            if not is_sqlite(engine):
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine, exc) from exc
