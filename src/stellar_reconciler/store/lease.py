"""Who may write: a PostgreSQL advisory lock for leader and standbys, a file lock on SQLite.

On PostgreSQL the leader is whoever holds one session-level advisory lock, on a connection of
its own opened straight to the server (a pooler in transaction mode would hand the session to
someone else). The lock ends with that session, so it ends when the process dies (the kernel
closes the socket) and, through `idle_session_timeout`, when the process is frozen: a leader
that cannot answer for LEADER_LEASE_SECS loses its lease even though its socket stays open.

Losing the lease is not enough by itself: a frozen leader may wake up in the middle of a
batch. So a new leader first ends every transaction of another replica that has written
something (`evict_writers`), and every batch asks the database, inside its own transaction and
as its last step, whether this replica's lease session still holds the lock (`fence`). Both
are in the database, so no clock and no message can disagree with them; the checkpoint's
compare-and-set stays the last line behind them.

Every connection of a replica carries `application_name` "rcl <instance> <advertise url>", so
a standby can name the leader's address, and the new leader can tell other replicas' writers
from its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from sqlalchemy import Connection

from stellar_reconciler.config import libpq_url
from stellar_reconciler.errors import (
    DatabaseInUseError,
    DatabaseUnavailableError,
    NotLeaderError,
)
from stellar_reconciler.store.database import sqlite_path

# The lock's two keys: "STLR" and 1. Any replica of any version uses the same pair.
LOCK_CLASS = 0x53544C52
LOCK_ID = 1
# Every replica's connections are named "rcl <instance> <url>"; PostgreSQL keeps 63 bytes.
NAME_PREFIX = "rcl"
NAME_LIMIT = 63

# Advisory locks belong to one database, but pg_locks and pg_stat_activity show the whole
# server: both queries below keep to this database, or a service on another database of the
# same server would be taken for our leader (or have its writes ended at our takeover).
_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s "
    "AND l.objsubid = 2 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# Whether the session `pid` holds the lock: asked by the heartbeat on the lease's own
# connection and by the fence inside a write transaction (the driver's parameter style).
_HOLDS = (
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %(cls)s "
    "AND objid = %(id)s AND objsubid = 2 AND granted AND pid = %(pid)s"
)


def instance_name(advertise_url: str) -> str:
    """A new replica's connection name: a random instance id and where it serves HTTP."""
    return f"{NAME_PREFIX} {secrets.token_hex(4)} {advertise_url}"[:NAME_LIMIT]


def advertised_url(application_name: str | None) -> str | None:
    """The URL a replica's connection name carries, or None for someone else's connection."""
    if not application_name:
        return None
    parts = application_name.split(" ", 2)
    if len(parts) != 3 or parts[0] != NAME_PREFIX:
        return None
    return parts[2]


class AdvisoryLease:
    """The leader's lock on PostgreSQL, held by a dedicated connection (blocking calls: run
    them off the event loop)."""

    def __init__(self, sqlalchemy_url: str, name: str, lease_secs: float) -> None:
        self._conninfo = libpq_url(sqlalchemy_url)
        self.name = name
        self._lease_ms = max(1000, int(lease_secs * 1000))
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.pid: int | None = None

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._conninfo, autocommit=True, application_name=self.name, connect_timeout=5
            )
            row = self._conn.execute("SELECT pg_backend_pid()").fetchone()
            self.pid = int(row[0]) if row else None
        return self._conn

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        try:
            conn = self._connect()
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, LOCK_ID)
            ).fetchone()
            if row and row[0]:
                # From now on the server ends this session when it stays idle past the lease:
                # that is how a frozen leader lets go. The heartbeat (`holds`) keeps a live
                # one busy enough.
                conn.execute(f"SET idle_session_timeout = {self._lease_ms:d}")
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailableError(f"cannot take the leader's lock: {exc}") from exc
        return bool(row and row[0])

    def holds(self) -> bool:
        """Whether this lease's session is alive and still holds the lock (the heartbeat)."""
        if self._conn is None or self._conn.closed or self.pid is None:
            return False
        try:
            row = self._conn.execute(_HOLDS, self._holds_parameters()).fetchone()
        except psycopg.Error:
            self.close()
            return False
        return row is not None

    def holder(self) -> str | None:
        """The connection name of whoever holds the lock now, if anyone."""
        try:
            row = self._connect().execute(_HOLDER, (LOCK_CLASS, LOCK_ID)).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailableError(f"cannot see who leads: {exc}") from exc
        return str(row[0]) if row else None

    def evict_writers(self, former: str | None) -> int:
        """End the open write transactions of other replicas (of `former`, the last leader
        seen, when known), waiting until they are gone; how many there were."""
        conn = self._connect()
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
            "AND datname = current_database() "
            "AND application_name <> %s AND (application_name = %s "
            "OR (%s::text IS NULL AND application_name LIKE %s))",
            (self.name, former, former, f"{NAME_PREFIX} %"),
        ).fetchall()
        return len(rows)

    def fence(self, conn: Connection) -> None:
        """Inside a write transaction: raise NotLeaderError unless our lease holds the lock.

        Run as the transaction's last statement: if it passes, the lock was ours after every
        row was written, and a replica taking it later ends this transaction before writing."""
        held = (
            self.pid is not None
            and conn.exec_driver_sql(_HOLDS, self._holds_parameters()).first() is not None
        )
        if not held:
            raise NotLeaderError(
                "this replica's leader lease has ended: another replica may lead now, so this "
                "batch was rolled back"
            )

    def _holds_parameters(self) -> dict[str, int | None]:
        return {"cls": LOCK_CLASS, "id": LOCK_ID, "pid": self.pid}

    def close(self) -> None:
        """Let go of the lock (by ending its session)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        self.pid = None


@dataclass
class FileLease:
    """SQLite: one `reconciler run` per file, held by an exclusive lock on `<file>.lock`.

    The operating system drops the lock when the process ends, however it ends."""

    path: Path
    _handle: IO[str] | None = None

    @classmethod
    def beside(cls, database_path: str) -> FileLease:
        return cls(Path(database_path + ".lock"))

    @classmethod
    def for_database(cls, url: str) -> FileLease | None:
        """The lock beside a SQLite database's file; None when there is no file."""
        path = sqlite_path(url)
        return None if path is None else cls.beside(path)

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUseError naming the process that holds it."""
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            database = str(self.path)[: -len(".lock")]
            raise DatabaseInUseError(
                f"{database} is already used by another `reconciler run` (pid {holder}); "
                "stop that one first, or give this one its own DATABASE_URL (on SQLite one "
                "process writes a database; for a standby, use PostgreSQL)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
