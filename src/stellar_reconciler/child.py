"""Child: a fresh interpreter doing one side job for the service, on a socket pair.

Fetching (fetch_child.py) and publishing (publish_child.py) each run in a process of their
own so that they get a core and an interpreter lock of their own. Both start the same way:
`python -c "from <module> import <function>; <function>(fd)"`, a fresh interpreter that imports
only its side (multiprocessing's spawn would import the service's main module again), with
its end of a socket pair as `fd`, and the parent's first message saying what to do. A child
takes the end of that pipe (the parent gone, even SIGKILLed) as the order to leave.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

import structlog

log = structlog.get_logger("stellar_reconciler.child")


def spawn(
    module: str, function: str, first: object, *, name: str
) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start `module.function(fd)` in a fresh interpreter and send it `first`; returns the
    process and the parent's end of the pipe. OSError when it cannot be started or reached."""
    command = f"import sys; from {module} import {function}; {function}(int(sys.argv[1]))"
    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
            [sys.executable, "-c", command, str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
    connection = Connection(ours.detach())
    log.info("child_started", job=name, pid=process.pid)
    try:
        connection.send(first)
    except OSError:
        connection.close()
        reap(process, name)
        raise
    return process, connection


def reap(process: subprocess.Popen[bytes], name: str) -> int:
    """Kill the child unless it has left already, wait for it, and log how it ended."""
    if process.poll() is None:
        process.kill()
    exitcode = process.wait()
    log.info("child_stopped", job=name, pid=process.pid, exitcode=exitcode)
    return exitcode


def first_message(fd: int) -> tuple[Connection, Any] | None:
    """In a child: its end of the pipe and the parent's first message, or None when the
    parent is gone already. Ctrl-C reaches the whole process group, but the parent decides
    when the child ends, so the child ignores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(fd)
    try:
        return connection, connection.recv()
    except EOFError:
        return None
