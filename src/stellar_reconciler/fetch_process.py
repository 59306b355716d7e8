"""FetchProcess: the worker's batches fetched in a process of its own, so a long catch-up
uses two cores.

Fetching, parsing and decoding a range costs about as much CPU as writing it, and in one
process both sides take turns on the same interpreter lock. Here a child process
(fetch_child.py) follows the range with the very same RangeFetcher and sizing on its own
event loop and streams each finished Batch back; the worker writes one batch while the child
fetches the next. Every RPC attempt the child makes is replayed into the parent's observer
(the metrics) when its batch comes back, and errors come back as the same typed errors the
in-process fetcher raises: FetchProcess and fetcher.InProcessSource are two BatchSources.
CatchUpSource, the one the worker is given, chooses between them by the length of the backlog;
the worker sees only the BatchSource protocol.

The child is a fresh interpreter started on first use (no copy of the parent's threads or
locks). `close()` asks an idle child to leave and waits for it off the event loop;
`terminate()` ends it at once, and is what happens when a request is abandoned half-way (its
answer would otherwise be read as the next one's) or the child dies; the next follow starts
a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncGenerator
from multiprocessing.connection import Connection

import structlog

from stellar_reconciler.child import reap, spawn
from stellar_reconciler.errors import FetchProcessLostError
from stellar_reconciler.fetch_child import ChildStart, FetchConfig, FollowRange, Reply
from stellar_reconciler.fetcher import BatchSizing, BatchSource
from stellar_reconciler.models import Batch
from stellar_reconciler.rpc import RpcObserver

log = structlog.get_logger("stellar_reconciler.fetch_process")

# How long a stopping child gets to leave on its own before it is killed.
_EXIT_GRACE_SECS = 2.0
# The child's name in the log (child_started, child_stopped), and what it runs.
_NAME = "fetch_process"
CHILD_ENTRY = ("stellar_reconciler.fetch_child", "child_main")
# Children lost in a row before the worker stops asking for one.
MAX_LOSSES = 3

__all__ = ["MAX_LOSSES", "CatchUpSource", "FetchConfig", "FetchProcess"]


class FetchProcess:
    """A BatchSource: follows ledger ranges in a child process and hands back their batches
    in order."""

    def __init__(self, config: FetchConfig, sizing: BatchSizing, observer: RpcObserver) -> None:
        self._start = ChildStart(config, sizing)
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
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        """first..target as consecutive batches, exactly as fetcher.follow_range yields them
        (same sizes, same errors), fetched by the child while the caller works on the last
        one. Leaving before the end ends the child; the next call starts a new one."""
        try:
            connection = self._started()
            connection.send(FollowRange(first, target, previous_hash))
        except OSError as exc:
            raise self._lost("could not be started or reached", exc) from exc
        finished = False
        try:
            while True:
                try:
                    reply: Reply = await asyncio.to_thread(connection.recv)
                except (EOFError, OSError) as exc:
                    finished = True
                    raise self._lost("ended unexpectedly", exc) from exc
                for method, outcome, seconds, error in reply.attempts:
                    self._observer.rpc_attempt(method, outcome, seconds, error)
                for method in reply.retries:
                    self._observer.rpc_retry(method)
                if reply.error is not None:
                    finished = True
                    raise reply.error
                if reply.batch is None:
                    finished = True
                    return
                self.losses = 0
                yield reply.batch.batch()
        finally:
            if not finished:
                # Batches still on their way would be read as the next call's: start afresh.
                # Ending the child also ends a thread still waiting on its pipe.
                self.terminate()

    async def close(self) -> None:
        """Ask an idle child to leave, and kill it if it has not within _EXIT_GRACE_SECS; the
        wait runs in a thread, so the event loop goes on meanwhile. Safe to call at any time;
        cancelled half-way, it kills the child at once."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            with contextlib.suppress(OSError):  # the child may be gone already
                connection.send(None)
            connection.close()
        if process is None:
            return
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, _EXIT_GRACE_SECS)
        finally:
            _stop(process)

    def terminate(self) -> None:
        """End the child now, busy or not (SIGKILL: it holds nothing that must be saved); a
        thread waiting on its pipe then sees end of file and lets go of the connection, which
        closes with it. Returns once the child is reaped, a matter of milliseconds."""
        process = self._process
        self._process = self._connection = None
        if process is not None:
            _stop(process)

    def _lost(self, what: str, cause: BaseException) -> FetchProcessLostError:
        self.terminate()
        self.losses += 1
        return FetchProcessLostError(f"the fetch process {what} ({cause!r})")

    def _started(self) -> Connection:
        if self._connection is not None and self._process is not None:
            if self._process.poll() is None:
                return self._connection
            self.terminate()
        process, connection = spawn(*CHILD_ENTRY, self._start, name=_NAME)
        self._process, self._connection = process, connection
        return connection


class CatchUpSource:
    """The worker's BatchSource: a backlog of at least `min_ledgers` ledgers is followed by
    the child (`child`), so writing gets a core of its own; a shorter one, following the tip
    included, in this process (`in_process`), where a hand-over would cost more than it
    saves. Without a child, everything is followed in this process."""

    def __init__(
        self, in_process: BatchSource, child: FetchProcess | None, min_ledgers: int
    ) -> None:
        self.in_process = in_process
        self.child = child
        self.min_ledgers = min_ledgers

    async def follow(
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        """first..target from the source its length calls for (see the class)."""
        source = await self._for_range(first, target)
        batches = source.follow(first, target, previous_hash)
        try:
            async for batch in batches:
                yield batch
        finally:
            await batches.aclose()

    async def close(self) -> None:
        """Give the child back, if it runs; the in-process side holds nothing."""
        if self.child is not None:
            await self.child.close()

    def terminate(self) -> None:
        """End the child now, busy or not (see FetchProcess.terminate)."""
        if self.child is not None:
            self.child.terminate()

    async def _for_range(self, first: int, target: int) -> BatchSource:
        child = self.child
        if child is not None and not child.trusted:
            log.warning(
                "fetch_process_abandoned",
                losses=child.losses,
                hint="catching up in one process; see the fetch_process errors above",
            )
            self.child = child = None
        if child is not None and target - first + 1 >= self.min_ledgers:
            return child
        if child is not None:
            # Caught up: the child's memory is better given back until the next long backlog.
            await child.close()
        return self.in_process


def _stop(process: subprocess.Popen[bytes]) -> None:
    reap(process, _NAME)
