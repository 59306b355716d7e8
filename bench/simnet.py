"""The simulated network in its own process, so it never shares the measured process's GIL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.procstat import cpu_seconds, free_port, stop

FIRST_LEDGER = 1000
START_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Simnet:
    pid: int
    url: str
    first_ledger: int
    latest_ledger: int

    @property
    def control_url(self) -> str:
        return f"{self.url}_simnet/status"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


def simnet_command(
    port: int,
    ledgers: int,
    events_per_ledger: int,
    ledger_interval: float,
    meta_padding: int = 0,
    retention_window: int | None = None,
    lake_dir: Path | None = None,
) -> list[str]:
    extra = [] if retention_window is None else ["--retention-window", str(retention_window)]
    extra += [] if lake_dir is None else ["--lake-dir", str(lake_dir)]
    return [
        sys.executable,
        "-m",
        "stellar_reconciler.simnet",
        "--port",
        str(port),
        "--first-ledger",
        str(FIRST_LEDGER),
        "--prebuilt",
        str(ledgers),
        "--events-per-ledger",
        str(events_per_ledger),
        "--ledger-interval",
        str(ledger_interval),
        "--meta-padding-bytes",
        str(meta_padding),
        "--log-level",
        "warning",
        *extra,
    ]


@contextmanager
def running_simnet(
    ledgers: int,
    events_per_ledger: int,
    ledger_interval: float = 0,
    log: Path | None = None,
    meta_padding: int = 0,
    retention_window: int | None = None,
    lake_dir: Path | None = None,
) -> Iterator[Simnet]:
    """Start `python -m stellar_reconciler.simnet`, wait until it answers, stop it after.
    With `lake_dir`, it first publishes its prebuilt history there as a SEP-54 lake."""
    port = free_port()
    command = simnet_command(
        port, ledgers, events_per_ledger, ledger_interval, meta_padding, retention_window, lake_dir
    )
    sink = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}/"
    try:
        status = _wait_ready(process, url)
        yield Simnet(process.pid, url, status["firstLedger"], status["latestLedger"])
    finally:
        stop(process, 10)
        if log is not None and not isinstance(sink, int):
            sink.close()


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> dict[str, int]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulated network exited with code {process.returncode}")
        try:
            response = httpx.get(f"{url}_simnet/status", timeout=2)
            if response.status_code == 200:
                body: dict[str, int] = response.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the simulated network did not answer within {START_TIMEOUT:.0f}s")
