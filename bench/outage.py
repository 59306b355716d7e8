"""What an RPC outage costs: seconds to stop, and log lines an hour.

    python -m bench.outage [--dead-secs 180]

1. Stop time: `reconciler run` against a loopback socket that accepts connections and never
   answers (default settings: 30 s timeouts, 5 attempts); once /health names the hung call,
   SIGTERM, and the seconds until the process has exited.
2. Log volume: `reconciler run` against a refused loopback port with default settings for
   `--dead-secs`, counting the lines written from the first failure on, per hour.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.loopback import closed_port, silent_server


def _start(rpc_url: str, folder: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log_file = folder / f"service-{port}.log"
    env = dict(os.environ) | {
        "STELLAR_RPC_URL": rpc_url,
        "DATABASE_URL": f"sqlite:///{folder / f'{port}.db'}",
        "BIND_ADDR": f"127.0.0.1:{port}",
    }
    script = Path(sys.executable).parent / "reconciler"
    with log_file.open("wb") as log:
        process = subprocess.Popen([str(script), "run"], env=env, stdout=log, stderr=log)
    return process, log_file


def _health_reason(port: int) -> str | None:
    try:
        reason: str | None = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()[
            "reason"
        ]
    except httpx.TransportError:
        return None
    return reason


def stop_seconds(folder: Path) -> float:
    with silent_server() as rpc_port:
        port = closed_port()
        process, _ = _start(f"http://127.0.0.1:{rpc_port}/", folder, port)
        try:
            deadline = time.monotonic() + 60
            while not (_health_reason(port) or "").startswith("waiting for"):
                if time.monotonic() > deadline:
                    raise SystemExit("the service never reported its hung call")
                time.sleep(0.1)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=300)
            return time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()


def dead_rpc_lines(folder: Path, seconds: float) -> dict[str, Any]:
    port = closed_port()
    process, log_file = _start(f"http://127.0.0.1:{closed_port()}/", folder, port)
    try:
        time.sleep(seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line]
    first = next(i for i, line in enumerate(lines) if line.get("level") in ("warning", "error"))
    events = [line["event"] for line in lines]
    end = events.index("stop_requested") if "stop_requested" in events else len(lines)
    during = lines[first:end]
    return {
        "lines_during_outage": len(during),
        "outage_secs": seconds,
        "lines_per_hour": round(len(during) * 3600 / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead-secs", type=float, default=180.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as folder:
        result = {
            "stop_secs_hung_rpc": round(stop_seconds(Path(folder)), 2),
            **dead_rpc_lines(Path(folder), args.dead_secs),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
