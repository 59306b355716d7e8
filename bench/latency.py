"""Steady state: from a ledger closing on the simulated network to its events being served
by the service's API, once the service has caught up.

Both ends are watched from this process with one clock: the network's getHealth is polled
every few milliseconds to see each ledger appear (the network closes ledgers on its own
timer, in its own process), and /api/events of that ledger is polled until it answers with
the ledger's events. The difference, per ledger, is the latency.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procstat import cpu_seconds
from bench.service import running_service
from bench.simnet import running_simnet

# How often each side is looked at; a latency is exact to within about these.
NETWORK_POLL_SECONDS = 0.005
API_POLL_SECONDS = 0.01
WARM_UP_LEDGERS = 2
CATCH_UP_TIMEOUT = 120.0


async def _tip(client: httpx.AsyncClient, rpc_url: str) -> int:
    response = await client.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"})
    return int(response.json()["result"]["latestLedger"])


class Closes:
    """When this process first saw each ledger at the network's tip."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.changed = asyncio.Event()
        self.stop = asyncio.Event()

    async def watch(self, client: httpx.AsyncClient, rpc_url: str) -> None:
        latest = await _tip(client, rpc_url)
        while not self.stop.is_set():
            tip = await _tip(client, rpc_url)
            now = time.perf_counter()
            for ledger in range(latest + 1, tip + 1):
                self.seen[ledger] = now
            if tip > latest:
                latest = tip
                self.changed.set()
            await asyncio.sleep(NETWORK_POLL_SECONDS)

    async def closed_at(self, ledger: int) -> float:
        while ledger not in self.seen:
            await self.changed.wait()
            self.changed.clear()
        return self.seen[ledger]


async def _visible(client: httpx.AsyncClient, api_url: str, ledger: int) -> float:
    while True:
        response = await client.get(
            f"{api_url}/api/events",
            params={"from_ledger": ledger, "to_ledger": ledger, "limit": 1},
        )
        if response.status_code == 200 and response.json()["events"]:
            return time.perf_counter()
        await asyncio.sleep(API_POLL_SECONDS)


async def _measure(rpc_url: str, api_url: str, first: int, samples: int) -> list[float]:
    closes = Closes()
    async with httpx.AsyncClient(timeout=10) as network, httpx.AsyncClient(timeout=10) as api:
        watcher = asyncio.create_task(closes.watch(network, rpc_url))
        latencies = []
        try:
            for ledger in range(first, first + samples):
                # A ledger cannot be served before it closes: wait for the close, then poll.
                closed = await closes.closed_at(ledger)
                latencies.append(await _visible(api, api_url, ledger) - closed)
        finally:
            closes.stop.set()
            await watcher
    return latencies


def _network_tip(rpc_url: str) -> int:
    response = httpx.post(
        rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"}, timeout=10
    )
    return int(response.json()["result"]["latestLedger"])


def measure_latency(
    database_url: str, events_per_ledger: int, samples: int, workdir: Path
) -> dict[str, Any]:
    """Run a network closing a ledger every second and the service on a fresh database; once
    the service has caught up, time `samples` consecutive ledgers."""
    log = workdir / "latency.log"
    with (
        running_simnet(100, events_per_ledger, ledger_interval=1, log=log) as net,
        running_service(database_url, net.url, net.first_ledger, log) as service,
    ):
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while (service.checkpoint() or 0) < _network_tip(net.url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not catch up; see {log}")
            time.sleep(0.1)
        first = (service.checkpoint() or 0) + 1 + WARM_UP_LEDGERS
        cpu_before = cpu_seconds(service.pid)
        started = time.perf_counter()
        latencies = asyncio.run(_measure(net.url, service.url, first, samples))
        wall = time.perf_counter() - started
        cpu = cpu_seconds(service.pid) - cpu_before
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "samples": len(latencies),
        "p50": quantiles[49],
        "p95": quantiles[94],
        "max": max(latencies),
        "events_per_ledger": events_per_ledger,
        "service_cpu_cores": cpu / wall,
    }
