"""The service catching up the whole simulated history from an empty database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.procstat import MachineCpu, children, cpu_seconds, memory_kib
from bench.service import running_service
from bench.simnet import Simnet

POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 3600.0


class Family:
    """The service and the processes it starts (its fetch process): CPU and memory summed,
    read at every poll because a child may end before the measurement does."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[int, float] = {}
        self.peak_kib: dict[int, int] = {}
        self.largest_rss_kib = 0

    def sample(self) -> None:
        rss = 0
        for pid in [self.pid, *children(self.pid)]:
            try:
                memory, cpu = memory_kib(pid), cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended between the listing and the reading
            self.cpu[pid] = cpu
            self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), memory.get("VmHWM", 0))
            rss += memory.get("VmRSS", 0)
        self.largest_rss_kib = max(self.largest_rss_kib, rss)

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def rpc_calls(metrics_text: str) -> dict[str, float]:
    """Successful RPC calls per method, from the service's /metrics."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "reconciler_rpc_requests_total" and sample.labels["outcome"] == "ok":
                found[sample.labels["method"]] = sample.value
    return found


def measure_catch_up(net: Simnet, database_url: str, log: Path) -> dict[str, Any]:
    """Start `reconciler run` on `database_url` and time it from the moment its worker knows
    its checkpoint (interpreter start-up and migrations excluded) until the checkpoint
    reaches the network's tip. Its /health is polled from outside, which costs it little.
    CPU and memory count the service's fetch process too: peak_rss_mb is the sum of each
    process's own peak (an upper bound of what they held together), largest_sampled_rss_mb
    the most they were seen holding at once."""
    spawned = time.perf_counter()
    with running_service(database_url, net.url, net.first_ledger, log) as service:
        ready: tuple[float, float, float, MachineCpu] | None = None
        family = Family(service.pid)
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"catch-up did not finish in {TIMEOUT_SECONDS:.0f}s; see {log}")
            try:
                checkpoint = service.checkpoint()
            except httpx.TransportError:
                checkpoint = None
            now = time.perf_counter()
            family.sample()
            if checkpoint is not None and ready is None:
                ready = (
                    now,
                    family.cpu_seconds(),
                    cpu_seconds(net.pid),
                    MachineCpu.now(),
                )
            if ready is not None and checkpoint is not None and checkpoint >= net.latest_ledger:
                break
            time.sleep(POLL_SECONDS)
        started, service_cpu, simnet_cpu, machine = ready
        family.sample()
        calls = rpc_calls(service.client.get(f"{service.url}/metrics").text)
        return {
            "rpc_calls": calls,
            "ledgers": net.latest_ledger - net.first_ledger + 1,
            "seconds": now - started,
            "seconds_from_spawn": now - spawned,
            "cpu": family.cpu_seconds() - service_cpu,
            "simnet_cpu": cpu_seconds(net.pid) - simnet_cpu,
            "machine_busy_cores": MachineCpu.now().busy_cores_since(machine),
            "processes": len(family.peak_kib),
            "peak_rss_mb": sum(family.peak_kib.values()) / 1024,
            "peak_rss_mb_by_process": [kib / 1024 for kib in family.peak_kib.values()],
            "largest_sampled_rss_mb": family.largest_rss_kib / 1024,
        }
