"""The publishing child: the NATS publisher (publisher.py) in an interpreter of its own.

In the service's process the publisher shared one interpreter lock with the worker, and
during a catch-up it published about half as fast as the worker stored
(docs/benchmarks.md). Here it has a process, a database connection and a core of its own;
the outbox it reads is the same table, so what it sends and the order it sends it in are
unchanged.

Messages on the socket pair (child.py): down, one `PublishStart`, then `None` to leave; up,
the publisher's state each time it changes (a reason it cannot send, or None once it can).
The end of the pipe also means leave: the parent is gone, and so is its leadership.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

from stellar_reconciler.child import first_message
from stellar_reconciler.config import Settings
from stellar_reconciler.logs import configure_logging
from stellar_reconciler.publisher import NatsPublisher
from stellar_reconciler.redaction import Redactor
from stellar_reconciler.store import Store


@dataclass(frozen=True, slots=True)
class PublishStart:
    """Everything the child needs, sent once: where the outbox is, where NATS is, and how
    to log (same format, same secrets kept out)."""

    database_url: str
    stream: str
    application_name: str | None
    nats_url: str
    nats_stream: str
    subject_prefix: str
    log_level: str
    log_format: str
    redactor: Redactor

    @classmethod
    def from_settings(
        cls, settings: Settings, stream: str, application_name: str | None
    ) -> PublishStart:
        return cls(
            database_url=settings.sqlalchemy_url,
            stream=stream,
            application_name=application_name,
            nats_url=settings.nats_url,
            nats_stream=settings.nats_stream,
            subject_prefix=settings.nats_subject_prefix,
            log_level=settings.log_level,
            log_format=settings.log_format,
            redactor=Redactor.from_settings(settings),
        )


class _PipeReport:
    """The publisher's PublishingReport in the child: each change goes up the pipe."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def publishing_state(self, failure: str | None) -> None:
        with self._lock, contextlib.suppress(OSError):  # the parent is gone: we stop anyway
            self._connection.send(failure)


def child_main(fd: int) -> None:
    """The child's whole life: publish the outbox until the parent says stop or is gone."""
    opened = first_message(fd)
    if opened is None:
        return
    connection, start = opened
    assert isinstance(start, PublishStart), "the parent sends a PublishStart first"
    configure_logging(start.log_level, log_format=start.log_format, redactor=start.redactor)
    asyncio.run(_publish(connection, start))


async def _publish(connection: Connection, start: PublishStart) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_leave() -> None:
        # Blocks on the pipe: `None` from the parent, or its end (the parent died).
        with contextlib.suppress(EOFError, OSError):
            while connection.recv() is not None:
                pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_leave, name="parent-pipe", daemon=True).start()
    store = Store.open(start.database_url, start.stream, application_name=start.application_name)
    publisher = NatsPublisher(
        store, _PipeReport(connection), start.nats_url, start.nats_stream, start.subject_prefix
    )
    try:
        await publisher.run(stop)
    finally:
        store.close()
