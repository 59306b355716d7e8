"""Real processes on loopback for the deployment tests: the simulated network, the service
(`reconciler run`, configured through its environment as in production) and tools from PATH."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

T = TypeVar("T")
DEADLINE_SECS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def required_tool(name: str, variable: str, how: str) -> str:
    """The path of `name`; skips the test without it, or fails it when `variable`=1 (CI)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({how}); set {variable}=1 to make this a failure"
        if os.environ.get(variable) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def poll(check: Callable[[], T | None], what: str, deadline: float = DEADLINE_SECS) -> T:
    """The first truthy answer of `check`, asked every 0.2 s until `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        try:
            answer = check()
        except httpx.TransportError:
            answer = None
        if answer:
            return answer
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what} after {deadline:.0f} s")
        time.sleep(0.2)


@contextmanager
def running(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run `command` with output to `log`; terminate it (then kill it) when the block ends."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=sink, env={**os.environ, **(env or {})}
        )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def simnet(log_dir: Path) -> Iterator[str]:
    """A simulated network closing a ledger a second; yields its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "stellar_reconciler.simnet",
        "--port",
        str(port),
        "--prebuilt",
        "20",
        "--ledger-interval",
        "1",
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}/"
    with running(command, log_dir / "simnet.log"):
        poll(lambda: httpx.get(f"{url}_simnet/status").status_code == 200, "the simnet")
        yield url


@contextmanager
def service(log_dir: Path, rpc_url: str) -> Iterator[str]:
    """`reconciler run` on a fresh SQLite file, failing fast on RPC errors; yields its URL."""
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite:///{log_dir / 'reconciler.db'}",
        "STELLAR_RPC_URL": rpc_url,
        "BIND_ADDR": f"127.0.0.1:{port}",
        "START_LEDGER": "oldest",
        "POLL_INTERVAL_SECS": "0.2",
        "RPC_MAX_ATTEMPTS": "1",
        "RPC_TIMEOUT_SECS": "5",
        "LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "stellar_reconciler.cli", "run"]
    url = f"http://127.0.0.1:{port}"
    with running(command, log_dir / "service.log", env):
        poll(lambda: httpx.get(f"{url}/health").status_code == 200, "the service to sync")
        yield url
