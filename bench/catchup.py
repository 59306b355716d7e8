"""The service catching up the whole simulated history from an empty database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bench.procstat import MachineCpu, cpu_seconds, memory_kib
from bench.service import running_service
from bench.simnet import Simnet

POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 3600.0


def measure_catch_up(net: Simnet, database_url: str, log: Path) -> dict[str, Any]:
    """Start `reconciler run` on `database_url` and time it from the moment its worker knows
    its checkpoint (interpreter start-up and migrations excluded) until the checkpoint
    reaches the network's tip. Its /health is polled from outside, which costs it little."""
    spawned = time.perf_counter()
    with running_service(database_url, net.url, net.first_ledger, log) as service:
        ready: tuple[float, float, float, MachineCpu] | None = None
        largest_rss = 0
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"catch-up did not finish in {TIMEOUT_SECONDS:.0f}s; see {log}")
            try:
                checkpoint = service.checkpoint()
            except httpx.TransportError:
                checkpoint = None
            now = time.perf_counter()
            largest_rss = max(largest_rss, memory_kib(service.pid).get("VmRSS", 0))
            if checkpoint is not None and ready is None:
                ready = (
                    now,
                    cpu_seconds(service.pid),
                    cpu_seconds(net.pid),
                    MachineCpu.now(),
                )
            if ready is not None and checkpoint is not None and checkpoint >= net.latest_ledger:
                break
            time.sleep(POLL_SECONDS)
        started, service_cpu, simnet_cpu, machine = ready
        memory = memory_kib(service.pid)
        return {
            "ledgers": net.latest_ledger - net.first_ledger + 1,
            "seconds": now - started,
            "seconds_from_spawn": now - spawned,
            "cpu": cpu_seconds(service.pid) - service_cpu,
            "simnet_cpu": cpu_seconds(net.pid) - simnet_cpu,
            "machine_busy_cores": MachineCpu.now().busy_cores_since(machine),
            "peak_rss_mb": memory.get("VmHWM", 0) / 1024,
            "largest_sampled_rss_mb": largest_rss / 1024,
        }
