"""What a process and the machine spent: CPU seconds, peak resident memory, from /proc.

psutil is not a dependency; Linux's /proc says all we need. Every reading is taken from
outside the measured process, so measuring costs it nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; fields after its closing parenthesis are
    # fixed: utime and stime are the 12th and 13th of them.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set since start), in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def children(pid: int) -> list[int]:
    """The direct children of a process (Linux lists them per thread)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return found


def peak_rss_mb(pid: int) -> float:
    return memory_kib(pid).get("VmHWM", 0) / 1024


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """Cumulative busy and total CPU time of the whole machine (all cores), in ticks."""

    busy: int
    total: int

    @classmethod
    def now(cls) -> MachineCpu:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in first[:8]]
        idle = values[3] + values[4]  # idle + iowait
        total = sum(values)
        return cls(total - idle, total)

    def busy_cores_since(self, earlier: MachineCpu) -> float:
        """Average number of busy cores between `earlier` and this reading."""
        elapsed = self.total - earlier.total
        if elapsed <= 0:
            return 0.0
        return (self.busy - earlier.busy) / elapsed * (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU time a process spent over a wall-clock interval, and the machine beside it."""

    wall: float
    cpu: float
    machine_busy_cores: float

    @property
    def cpu_cores(self) -> float:
        """Average cores the process kept busy (1.0 = one core all the time)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """Ask a child to stop (SIGTERM); kill it when it has not within `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
