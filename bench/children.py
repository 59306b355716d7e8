"""Running a measured script (a ceiling, the baseline) as a child process and reading back
its JSON result, its peak resident memory and the CPU the simulated network spent meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procstat import MachineCpu, cpu_seconds


def run_measured(module: str, args: list[str], log: Path, simnet_pid: int) -> dict[str, Any]:
    """`python -m module args...`; returns its JSON result plus peak_rss_mb (from the kernel's
    accounting of the reaped child), simnet_cpu and machine_busy_cores over its whole run."""
    command = [sys.executable, "-m", module, *args]
    simnet_before, machine_before = cpu_seconds(simnet_pid), MachineCpu.now()
    started = time.perf_counter()
    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink)
        assert process.stdout is not None
        output = process.stdout.read().decode()
        process.stdout.close()
        # wait4 rather than wait(): it hands back the child's own resource usage.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["process_wall"] = wall
    result["simnet_cpu"] = cpu_seconds(simnet_pid) - simnet_before
    result["machine_busy_cores"] = MachineCpu.now().busy_cores_since(machine_before)
    return result
