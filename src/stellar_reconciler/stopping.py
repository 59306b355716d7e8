"""Stopping: the stop signals, and the deadline that ends the process whatever it waits for.

SIGINT and SIGTERM set the service's stop event; STOP_DEADLINE_SECS after the first, the
process is gone (see StopDeadline), and a second signal ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import structlog

from stellar_reconciler.errors import StopDeadlineError

# Its lines are the service's, under the logger name operators already filter on.
log = structlog.get_logger("stellar_reconciler.service")

# A stop signal ends `reconciler run` within this many seconds, whatever it is waiting for.
STOP_DEADLINE_SECS = 10.0
# Of which the tasks get this long to wind down before they are cancelled...
TASKS_GRACE_SECS = 7.0
# ...and the process is ended outright this long after the signal (a thread stuck in a
# database call would otherwise hold the interpreter's exit): a second before the deadline.
FORCED_EXIT_SECS = STOP_DEADLINE_SECS - 1.0
# The exit code when the deadline had to end the process.
FORCED_EXIT_CODE = 1


class StopDeadline:
    """Ends the process FORCED_EXIT_SECS after the first stop signal, or at once on a second.

    A cancelled task lets go at once, but a thread stuck in a database call (a lock that is
    never released, a server that stopped answering) cannot be cancelled, and the interpreter
    waits for it before exiting. Ending the process is safe for the data: a transaction that
    never sent its COMMIT is rolled back by the database.
    """

    def __init__(self, describe: Callable[[], str], before_exit: Callable[[], None]) -> None:
        self._describe = describe
        self._before_exit = before_exit
        self._timer: threading.Timer | None = None
        self._signalled_at: float | None = None

    def signalled(self, stop: asyncio.Event) -> None:
        if self._timer is not None:
            log.warning("stop_signal_repeated", hint="exiting now")
            self._expire()
        self._signalled_at = time.monotonic()
        stop.set()
        self._timer = threading.Timer(FORCED_EXIT_SECS, self._expire)
        self._timer.daemon = True
        self._timer.start()
        log.info("stop_requested", deadline_secs=STOP_DEADLINE_SECS)

    def expire(self) -> None:
        """End the process now (the service stopped, but a thread still holds its exit)."""
        self._expire()

    def _expire(self) -> None:
        started = self._signalled_at
        waited = time.monotonic() - started if started is not None else 0.0
        error = StopDeadlineError(round(waited, 1), self._describe())
        try:
            self._before_exit()
        finally:
            log.error("stop_forced", error=str(error), exit_code=FORCED_EXIT_CODE)
            logging.shutdown()
            os._exit(FORCED_EXIT_CODE)


def install_signal_handlers(stop: asyncio.Event, deadline: StopDeadline | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if deadline is None:
            loop.add_signal_handler(sig, stop.set)
        else:
            loop.add_signal_handler(sig, deadline.signalled, stop)
