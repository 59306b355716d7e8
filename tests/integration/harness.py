"""Running the real service (in-process or as a `reconciler run` subprocess) against the
simulated network, and waiting for conditions with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from stellar_reconciler.config import Settings
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetwork
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import events, ledgers

# Retries that do not make tests wait: the policy is the same, only the backoff is tiny.
FAST_RPC = {
    "rpc_max_attempts": 3,
    "rpc_initial_backoff_ms": 5,
    "rpc_max_backoff_secs": 0.05,
    "rpc_timeout_secs": 5,
    "poll_interval_secs": 0.05,
}


def settings_for(database_url: str, rpc_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "stellar_rpc_url": rpc_url,
        "bind_addr": "127.0.0.1:0",
        **FAST_RPC,
        **overrides,
    }
    return Settings.from_env(**values)


async def wait_for(
    condition: Callable[[], Any], within: float = 30.0, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_for_sync(
    condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[tuple[Service, str]]:
    """The whole service (worker and HTTP server) on this event loop; yields it and its URL."""
    service = Service.build(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        port = await wait_for(service.bound_port, 10, "the HTTP server to listen")
        yield service, f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def stored_event_ids(database_url: str) -> list[str]:
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            return list(
                conn.execute(
                    events.select().with_only_columns(events.c.id).order_by(events.c.id)
                ).scalars()
            )
    finally:
        store.close()


def stored_ledgers(database_url: str) -> list[tuple[int, str, str, int]]:
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                ledgers.select()
                .with_only_columns(
                    ledgers.c.sequence,
                    ledgers.c.hash,
                    ledgers.c.previous_hash,
                    ledgers.c.event_count,
                )
                .order_by(ledgers.c.sequence)
            )
            return [(r[0], r[1], r[2], r[3]) for r in rows]
    finally:
        store.close()


def network_ledgers(net: SimNetwork, first: int, last: int) -> list[tuple[int, str, str, int]]:
    return [
        (r["sequence"], r["hash"], r["previousLedgerHash"], r["eventCount"])
        for r in net.record_ledgers(first, last)
    ]


def network_event_ids(net: SimNetwork, first: int, last: int) -> list[str]:
    return [e["id"] for e in net.record_events(first, last)]


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a `reconciler run` subprocess needs to behave like `settings`."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "STELLAR_RPC_URL": settings.stellar_rpc_url,
            "BIND_ADDR": settings.bind_addr,
            "POLL_INTERVAL_SECS": str(settings.poll_interval_secs),
            "RPC_MAX_ATTEMPTS": str(settings.rpc_max_attempts),
            "RPC_INITIAL_BACKOFF_MS": str(settings.rpc_initial_backoff_ms),
            "RPC_MAX_BACKOFF_SECS": str(settings.rpc_max_backoff_secs),
            "START_LEDGER": settings.start_ledger,
            "BATCH_MAX_LEDGERS": str(settings.batch_max_ledgers),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextlib.contextmanager
def reconciler_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`reconciler run` (or another command) as a real child process."""
    script = Path(sys.executable).parent / "reconciler"
    launcher = (
        [str(script)] if script.exists() else [sys.executable, "-m", "stellar_reconciler.cli"]
    )
    command = [*launcher, *(args or ("run",))]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def get_json(url: str) -> tuple[int, Any]:
    response = httpx.get(url, timeout=10)
    return response.status_code, response.json()
