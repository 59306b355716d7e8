"""The fetch child: a fresh interpreter that follows ledger ranges and streams their batches.

This module is the whole of what the child imports (the fetching side: no web app, no
SQLAlchemy), and it defines the messages that cross the socket pair between the child and
its parent (fetch_process.FetchProcess). The first message down is a `ChildStart` (how to
reach the RPC and how big a batch may grow), sent once; then each request is a `FollowRange`
and is answered by one `Reply` per batch and a last one with no batch. Every RPC attempt the
child makes rides home on the reply of the batch it was made for.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from stellar_reconciler.child import first_message
from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.config import Settings
from stellar_reconciler.errors import ReconcilerError
from stellar_reconciler.fetcher import BatchSizing, RangeFetcher, follow_range
from stellar_reconciler.logs import configure_logging
from stellar_reconciler.models import Batch, Event, LedgerRecord
from stellar_reconciler.redaction import Redactor, url_secrets
from stellar_reconciler.rpc import RetryPolicy, StellarRpc, new_http_client


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """What the child needs to reach the RPC exactly as the parent does."""

    rpc_url: str
    retry: RetryPolicy
    timeout_secs: float
    user_agent: str
    filter_sets: list[list[dict[str, Any]]]
    log_level: str = "info"
    log_format: str = "auto"

    @classmethod
    def from_settings(
        cls, settings: Settings, filter_sets: list[list[dict[str, Any]]]
    ) -> FetchConfig:
        return cls(
            rpc_url=settings.stellar_rpc_url,
            retry=RetryPolicy.from_settings(settings),
            timeout_secs=settings.rpc_timeout_secs,
            user_agent=settings.user_agent,
            filter_sets=filter_sets,
            log_level=settings.log_level,
            log_format=settings.log_format,
        )


@dataclass(frozen=True, slots=True)
class ChildStart:
    """The child's first message, sent once: everything that stays the same for its life."""

    config: FetchConfig
    sizing: BatchSizing


@dataclass(frozen=True, slots=True)
class FollowRange:
    """One request: first..target, chained to `previous_hash`."""

    first: int
    target: int
    previous_hash: str | None


@dataclass(frozen=True, slots=True)
class WireBatch:
    """A Batch as it crosses the pipe: its events as plain tuples, which pickle in C, where
    an Event (a NamedTuple) would go through Python-level __getnewargs__ and __new__ calls,
    measured at ~9% of a catch-up's CPU."""

    first_ledger: int
    last_ledger: int
    ledgers: tuple[LedgerRecord, ...]
    events: list[tuple[Any, ...]]

    @classmethod
    def of(cls, batch: Batch) -> WireBatch:
        events = list(map(tuple, batch.events))
        return cls(batch.first_ledger, batch.last_ledger, batch.ledgers, events)

    def batch(self) -> Batch:
        return Batch(
            self.first_ledger,
            self.last_ledger,
            self.ledgers,
            tuple(map(Event._make, self.events)),
        )


@dataclass(slots=True)
class Reply:
    """One batch, or the end of a range (no batch), or the error it ended with."""

    batch: WireBatch | None
    error: ReconcilerError | None
    attempts: list[tuple[str, str, float, str | None]] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)


class _Recorder:
    """The child's RpcObserver: keeps every attempt until the reply carries them home."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, float, str | None]] = []
        self.retries: list[str] = []

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.attempts.append((method, outcome, seconds, error))

    def rpc_retry(self, method: str) -> None:
        self.retries.append(method)

    def reply(self, batch: Batch | None, error: ReconcilerError | None) -> Reply:
        wire = WireBatch.of(batch) if batch is not None else None
        found = Reply(wire, error, self.attempts, self.retries)
        self.attempts, self.retries = [], []
        return found


def child_main(fd: int) -> None:
    """The child's whole life: follow the ranges the parent asks for, sending each batch as
    soon as it is fetched, until the parent says stop or is gone. `fd` is the child's end of
    a socket pair."""
    opened = first_message(fd)
    if opened is None:
        return
    connection, start = opened
    assert isinstance(start, ChildStart), "the parent sends a ChildStart first"
    config = start.config
    # The child writes to the same stderr: same format, same secrets kept out.
    redactor = Redactor(url_secrets(config.rpc_url))
    configure_logging(config.log_level, log_format=config.log_format, redactor=redactor)
    # Frozen start-up objects, but the default young threshold: a higher one kept the child
    # ~13 MB larger for no measurable speed (docs/benchmarks.md).
    tune_garbage_collector(young_threshold=gc.get_threshold()[0])
    loop = asyncio.new_event_loop()
    recorder = _Recorder()
    client = new_http_client(config.timeout_secs, config.user_agent)
    fetcher = RangeFetcher(
        StellarRpc(client, config.rpc_url, config.retry, observer=recorder), config.filter_sets
    )
    try:
        while True:
            try:
                request = connection.recv()
            except EOFError:
                return  # the parent is gone
            if request is None:
                return
            loop.run_until_complete(_follow(connection, fetcher, recorder, start.sizing, request))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent stopped listening
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


async def _follow(
    connection: Connection,
    fetcher: RangeFetcher,
    recorder: _Recorder,
    sizing: BatchSizing,
    request: FollowRange,
) -> None:
    batches = follow_range(
        fetcher,
        sizing.sizer(),
        request.first,
        request.target,
        request.previous_hash,
        sizing.max_events,
    )
    try:
        async for batch in batches:
            # Blocks while the parent is still busy with earlier batches: that is the
            # back-pressure that keeps memory bounded however long the backlog.
            connection.send(recorder.reply(batch, None))
    except ReconcilerError as exc:
        connection.send(recorder.reply(None, exc))
        return
    connection.send(recorder.reply(None, None))
