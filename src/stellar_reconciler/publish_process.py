"""PublishProcess: the leader's NATS publisher, run in a child process (publish_child.py).

The parent starts the child when it comes to lead, turns the child's reports into the
service's status (a health reason while publishing fails), and ends it when leadership or
the service ends: `None` down the pipe, then SIGKILL if it has not left within
_EXIT_GRACE_SECS (it holds nothing that must be saved: what it sent but had not yet deleted
from the outbox is sent again, and JetStream's duplicate window drops it). A child that dies
on its own is started again after a pause that doubles up to _MAX_RESTART_SECS, and health
says so meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from multiprocessing.connection import Connection

import structlog

from stellar_reconciler.child import reap, spawn
from stellar_reconciler.publish_child import PublishStart
from stellar_reconciler.publisher import PublishingReport

log = structlog.get_logger("stellar_reconciler.publish_process")

_NAME = "publish_process"
# How long a stopping child gets to flush what was acknowledged before it is killed.
_EXIT_GRACE_SECS = 3.0
_FIRST_RESTART_SECS = 0.5
_MAX_RESTART_SECS = 10.0


class PublishProcess:
    """Runs the publisher in a child for as long as `run`'s stop event is clear."""

    def __init__(self, start: PublishStart, report: PublishingReport) -> None:
        self._start = start
        self._report = report

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one publishing child running until `stop`, then end it."""
        pause = _FIRST_RESTART_SECS
        while not stop.is_set():
            started = time.monotonic()
            try:
                process, connection = await asyncio.to_thread(
                    spawn, "stellar_reconciler.publish_child", "child_main", self._start, name=_NAME
                )
            except OSError as exc:
                exitcode: int | str = f"could not be started: {exc}"
            else:
                exitcode = await self._supervise(process, connection, stop)
            if stop.is_set():
                return
            if time.monotonic() - started > _MAX_RESTART_SECS:
                pause = _FIRST_RESTART_SECS  # it had been working: no reason to wait long
            log.warning("publish_process_lost", exitcode=exitcode, restart_in_secs=pause)
            self._report.publishing_state(
                f"the NATS publishing process ended unexpectedly ({exitcode}); it is started "
                "again, and events wait in the outbox (reconciler_nats_outbox_pending) meanwhile"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(_MAX_RESTART_SECS, pause * 2)

    async def _supervise(
        self, process: subprocess.Popen[bytes], connection: Connection, stop: asyncio.Event
    ) -> int:
        """Relay the child's reports until it ends or `stop`; returns its exit code."""
        reports = asyncio.ensure_future(self._relay(connection))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reports, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                with contextlib.suppress(OSError):  # it may be gone already
                    connection.send(None)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(process.wait, _EXIT_GRACE_SECS)
        finally:
            stopping.cancel()
            # Killing the child ends the relay's wait on the pipe, too.
            exitcode = await asyncio.to_thread(reap, process, _NAME)
            with contextlib.suppress(asyncio.CancelledError, EOFError, OSError):
                await reports
            connection.close()
        return exitcode

    async def _relay(self, connection: Connection) -> None:
        """The child's state changes into the service's status, until the pipe ends."""
        while True:
            try:
                failure: str | None = await asyncio.to_thread(connection.recv)
            except (EOFError, OSError):
                return
            self._report.publishing_state(failure)
