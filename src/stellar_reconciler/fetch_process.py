"""FetchProcess: a RangeFetcher in a process of its own, so a long catch-up uses two cores.

Fetching, parsing and decoding a range costs about as much CPU as writing it, and in one
process both sides take turns on the same interpreter lock. Here a child process follows the
range with the very same RangeFetcher and sizing (fetcher.follow_range) on its own event loop
and streams each finished Batch back; the worker writes one batch while the child fetches the
next. Every RPC attempt the child makes is replayed into the parent's observer (the metrics)
when its batch comes back, and errors come back as the same typed errors the in-process
fetcher raises, so the worker treats both fetchers alike.

The child is a fresh interpreter started on first use (no copy of the parent's threads or
locks) and is ended when the worker stops, when a request is abandoned half-way (its answer
would otherwise be read as the next one's), or when it dies; the next fetch starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import structlog

from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.config import Settings
from stellar_reconciler.errors import ReconcilerError, RpcTransientError
from stellar_reconciler.fetcher import BatchSizer, RangeFetcher, follow_range
from stellar_reconciler.logs import configure_logging
from stellar_reconciler.models import Batch, Event, LedgerRecord
from stellar_reconciler.rpc import RetryPolicy, RpcObserver, StellarRpc, new_http_client

log = structlog.get_logger("stellar_reconciler.fetch_process")

# How long a stopping child gets to leave on its own before it is killed.
_EXIT_GRACE_SECS = 2.0
# Children lost in a row before the worker stops asking for one.
MAX_LOSSES = 3


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """What the child needs to reach the RPC exactly as the parent does."""

    rpc_url: str
    retry: RetryPolicy
    timeout_secs: float
    user_agent: str
    filter_sets: list[list[dict[str, Any]]]
    log_level: str = "info"

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
        )


class FetchProcessLostError(RpcTransientError):
    """The fetch process died or had to be stopped; a new one is started on the next fetch."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "fetch process",
            f"{reason}; the range is fetched again by a new fetch process. If this repeats, "
            "check the service's memory limit, or set CATCH_UP_PROCESS_LEDGERS=0 to fetch in "
            "the service's own process",
        )


@dataclass(frozen=True, slots=True)
class _PortableError:
    """A typed error carried across the pipe without calling its __init__ again (several take
    other arguments than the message pickle would hand them)."""

    kind: type[ReconcilerError]
    args: tuple[Any, ...]
    state: dict[str, Any]

    @classmethod
    def of(cls, error: ReconcilerError) -> _PortableError:
        return cls(type(error), error.args, dict(vars(error)))

    def rebuild(self) -> ReconcilerError:
        error = self.kind.__new__(self.kind)
        error.args = self.args
        vars(error).update(self.state)
        return error


@dataclass(slots=True)
class _Reply:
    batch: _WireBatch | None
    error: _PortableError | None
    attempts: list[tuple[str, str, float, str | None]] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _WireBatch:
    """A Batch as it crosses the pipe: its events as plain tuples, which pickle in C, where
    an Event (a NamedTuple) would go through Python-level __getnewargs__ and __new__ calls,
    measured at ~9% of a catch-up's CPU."""

    first_ledger: int
    last_ledger: int
    ledgers: tuple[LedgerRecord, ...]
    events: list[tuple[Any, ...]]

    @classmethod
    def of(cls, batch: Batch) -> _WireBatch:
        events = list(map(tuple, batch.events))
        return cls(batch.first_ledger, batch.last_ledger, batch.ledgers, events)

    def batch(self) -> Batch:
        return Batch(
            self.first_ledger,
            self.last_ledger,
            self.ledgers,
            tuple(map(Event._make, self.events)),
        )


class _Recorder:
    """The child's RpcObserver: keeps every attempt until the reply carries them home."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, float, str | None]] = []
        self.retries: list[str] = []

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.attempts.append((method, outcome, seconds, error))

    def rpc_retry(self, method: str) -> None:
        self.retries.append(method)

    def reply(self, batch: Batch | None, error: _PortableError | None) -> _Reply:
        wire = _WireBatch.of(batch) if batch is not None else None
        found = _Reply(wire, error, self.attempts, self.retries)
        self.attempts, self.retries = [], []
        return found


def child_main(fd: int) -> None:
    """The child's whole life: follow the ranges the parent asks for, sending each batch as
    soon as it is fetched, until the parent says stop or is gone. `fd` is the child's end of
    a socket pair; the first message on it is the FetchConfig."""
    # Ctrl-C reaches the whole process group; the parent decides when the child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(fd)
    try:
        config: FetchConfig = connection.recv()
    except EOFError:
        return
    configure_logging(config.log_level)
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
            loop.run_until_complete(_follow(connection, fetcher, recorder, request))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent stopped listening
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


@dataclass(frozen=True, slots=True)
class _Follow:
    first: int
    target: int
    previous_hash: str | None
    max_ledgers: int
    target_events: int
    max_events: int


async def _follow(
    connection: Connection, fetcher: RangeFetcher, recorder: _Recorder, request: _Follow
) -> None:
    sizer = BatchSizer(request.max_ledgers, request.target_events)
    batches = follow_range(
        fetcher, sizer, request.first, request.target, request.previous_hash, request.max_events
    )
    try:
        async for batch in batches:
            # Blocks while the parent is still busy with earlier batches: that is the
            # back-pressure that keeps memory bounded however long the backlog.
            connection.send(recorder.reply(batch, None))
    except ReconcilerError as exc:
        connection.send(recorder.reply(None, _PortableError.of(exc)))
        return
    connection.send(recorder.reply(None, None))


class FetchProcess:
    """Follows ledger ranges in a child process and hands back their batches in order."""

    def __init__(self, config: FetchConfig, observer: RpcObserver) -> None:
        self._config = config
        self._observer = observer
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        # Children lost in a row without a batch in between; see `trusted`.
        self.losses = 0

    @property
    def trusted(self) -> bool:
        """False after MAX_LOSSES children in a row died before handing over a batch: the
        environment cannot run one (no interpreter at sys.executable, a memory limit...), and
        the worker then fetches in its own process rather than never getting anywhere."""
        return self.losses < MAX_LOSSES

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def follow(
        self,
        first: int,
        target: int,
        previous_hash: str | None,
        max_ledgers: int,
        target_events: int,
        max_events: int,
    ) -> AsyncGenerator[Batch, None]:
        """first..target as consecutive batches, exactly as fetcher.follow_range yields them
        (same sizes, same errors), fetched by the child while the caller works on the last
        one. Leaving before the end stops the child; the next call starts a new one."""
        try:
            connection = self._started()
            connection.send(
                _Follow(first, target, previous_hash, max_ledgers, target_events, max_events)
            )
        except OSError as exc:
            raise self._lost("could not be started or reached", exc) from exc
        finished = False
        try:
            while True:
                try:
                    reply: _Reply = await asyncio.to_thread(connection.recv)
                except (EOFError, OSError) as exc:
                    finished = True
                    raise self._lost("ended unexpectedly", exc) from exc
                for method, outcome, seconds, error in reply.attempts:
                    self._observer.rpc_attempt(method, outcome, seconds, error)
                for method in reply.retries:
                    self._observer.rpc_retry(method)
                if reply.error is not None:
                    finished = True
                    raise reply.error.rebuild()
                if reply.batch is None:
                    finished = True
                    return
                self.losses = 0
                yield reply.batch.batch()
        finally:
            if not finished:
                # Batches still on their way would be read as the next call's: start afresh.
                # Killing the child also ends a thread still waiting on its pipe.
                self._kill()

    def _lost(self, what: str, cause: BaseException) -> FetchProcessLostError:
        self._kill()
        self.losses += 1
        return FetchProcessLostError(f"the fetch process {what} ({cause!r})")

    def _started(self) -> Connection:
        if self._connection is not None and self._process is not None:
            if self._process.poll() is None:
                return self._connection
            self._kill()
        ours, theirs = socket.socketpair()
        with theirs:
            # A fresh interpreter that imports only the fetching side (not the web app, not
            # SQLAlchemy): multiprocessing's spawn would re-import the service's main module.
            process = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
                [sys.executable, "-c", _CHILD_COMMAND, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        connection = Connection(ours.detach())
        # Owned before the first send, so a child that is already gone is still reaped.
        self._process, self._connection = process, connection
        log.info("fetch_process_started", pid=process.pid)
        connection.send(self._config)
        return connection

    def close(self) -> None:
        """Stop an idle child (politely, then for sure); safe to call at any time."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            with contextlib.suppress(OSError):  # the child may be gone already
                connection.send(None)
            connection.close()
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_EXIT_GRACE_SECS)
            _stop(process)

    def kill(self) -> None:
        """End the child now, busy or not: shutdown must not wait for a hung RPC call."""
        self._kill()

    def _kill(self) -> None:
        """End a child that may be busy; a thread waiting on its pipe then sees end of file
        and lets go of the connection, which closes with it."""
        process = self._process
        self._process = self._connection = None
        if process is not None:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    log.info("fetch_process_stopped", pid=process.pid, exitcode=process.wait())


_CHILD_COMMAND = "import sys; from stellar_reconciler.fetch_process import child_main; " + (
    "child_main(int(sys.argv[1]))"
)
