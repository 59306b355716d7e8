"""`reconciler run` as a child process, configured through its environment like in production."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.procstat import free_port, stop

START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ServiceProcess:
    pid: int
    url: str
    client: httpx.Client

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"{self.url}/health").json()
        return body

    def checkpoint(self) -> int | None:
        ledger = self.health().get("last_processed_ledger")
        return int(ledger) if ledger is not None else None


@contextmanager
def running_service(
    database_url: str, rpc_url: str, start_ledger: int, log: Path, **settings: str
) -> Iterator[ServiceProcess]:
    """Start the service on an empty database; yields once its HTTP server answers."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STELLAR_RPC_URL": rpc_url,
        "BIND_ADDR": f"127.0.0.1:{port}",
        "START_LEDGER": str(start_ledger),
        "LOG_LEVEL": "warning",
        **{key.upper(): value for key, value in settings.items()},
    }
    command = [sys.executable, "-m", "stellar_reconciler.cli", "run"]
    with log.open("ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as client:
            _wait_listening(process, client, url, log)
            yield ServiceProcess(process.pid, url, client)
    finally:
        stop(process, 30)


def _wait_listening(
    process: subprocess.Popen[bytes], client: httpx.Client, url: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}; see {log}")
        try:
            client.get(f"{url}/health")
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"the service did not listen within {START_TIMEOUT:.0f}s; see {log}")
