"""Where catch-up spends its time: the service under py-spy, plus the garbage collector's share.

    python -m bench.profile                            # SQLite, the default 1,000,000 events
    python -m bench.profile --database postgres --ledgers 2000 --events 100000

The service runs as `python -m bench.traced` (which is `reconciler run` with the collector's
pauses timed) under `py-spy record`, from an empty database to the network's tip. Printed:
the share of samples per stage of the pipeline, the functions with the most samples, and
the collector's seconds beside the service's CPU seconds. The raw py-spy output stays in
--output for flame graphs (speedscope.app reads it after `--format speedscope`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.catchup import Family
from bench.databases import admin_url, fresh_database
from bench.procstat import free_port
from bench.simnet import running_simnet

# Pipeline stages, each recognised by a function on the sampled stack (first match wins,
# checked in this order, so a stage nested inside another is named before it).
STAGES = (
    ("DB: commit", ("DefaultDialect.do_commit",)),
    ("DB: driver (executemany / COPY)", ("_write", "DefaultDialect.do_executemany")),
    (
        "DB: building rows",
        (
            "insert_events",
            "insert_many",
            "event_row",
            "ledger_row",
            "SQLCompiler.construct_params",
            "DefaultExecutionContext._init_compiled",
        ),
    ),
    ("DB: other (checkpoint, hooks)", ("Store.commit_batch",)),
    (
        "pipe: batches pickled and loaded between the processes",
        (
            "_ConnectionBase.recv",
            "_ConnectionBase.send",
            "ForkingPickler.dumps",
            "WireBatch.of",
            "WireBatch.batch",
        ),
    ),
    ("decode: ScVal topics and values", ("decode_event",)),
    ("decode: ledger headers", ("parse_ledger",)),
    ("RPC: JSON parsing", ("Response.json",)),
    ("RPC: entry checks", ("parse_event",)),
    ("RPC: HTTP", ("AsyncClient.send", "StellarRpc._call_once")),
    ("HTTP API (the poller)", ("FastAPI.__call__",)),
)


def frame_name(frame: str) -> str:
    """'insert_events (stellar_reconciler/store/bulk.py:71)' -> 'insert_events'."""
    return frame.split(" (", 1)[0]


def frame_place(frame: str) -> str:
    """'insert_events (stellar_reconciler/store/bulk.py:71)' -> 'insert_events (bulk.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})" if where else name


def summarise(raw: Path, top: int) -> str:
    """Share of samples per stage of the pipeline and per function (self time), from
    py-spy's raw output."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        names = {frame_name(f) for f in frames}
        leaves[frame_place(frames[-1])] += count
        stage = next((label for label, marks in STAGES if names & set(marks)), "other")
        stages[stage] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples of busy threads; share per stage of the pipeline:"]
    lines += [f"  {100 * n / total:5.1f}%  {label}" for label, n in stages.most_common()]
    lines.append(f"functions with the most samples of their own (self time), top {top}:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines)


def profile(args: argparse.Namespace) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args.output.mkdir(parents=True, exist_ok=True)
    raw, gc_report = args.output / "py-spy.txt", args.output / "gc.json"
    per_ledger = args.events // args.ledgers
    with (
        running_simnet(args.ledgers, per_ledger, log=args.output / "simnet.log") as net,
        fresh_database(args.database, args.output, args.postgres_url) as url,
        (args.output / "service.log").open("ab") as log,
    ):
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "STELLAR_RPC_URL": net.url,
            "BIND_ADDR": f"127.0.0.1:{port}",
            "START_LEDGER": str(net.first_ledger),
            "LOG_LEVEL": "warning",
        }
        service = subprocess.Popen(
            [sys.executable, "-m", "bench.traced", str(gc_report)], env=env, stdout=log, stderr=log
        )
        try:
            # Sampling starts once the worker is ready, so start-up is not in the profile.
            _wait_for_checkpoint(port, None, service)
            spy = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--nonblocking",
                    "--subprocesses",
                    "--pid",
                    str(service.pid),
                ],
                stdout=log,
                stderr=log,
            )
            family = Family(service.pid)
            family.sample()
            started, cpu_started = time.perf_counter(), family.cpu_seconds()
            _wait_for_checkpoint(port, net.latest_ledger, service, family)
            wall = time.perf_counter() - started
            cpu = family.cpu_seconds() - cpu_started
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        finally:
            # SIGINT: the service stops cleanly and writes the collector's report.
            service.send_signal(signal.SIGINT)
            service.wait(60)
    collector = json.loads(gc_report.read_text())
    gc_seconds = sum(g["seconds"] for g in collector.values())
    per_generation = ", ".join(
        f"gen{generation}: {g['collections']}x {g['seconds']:.1f}s"
        for generation, g in collector.items()
    )
    print(summarise(raw, args.top))
    print(
        f"catch-up {wall:.1f}s wall, service CPU {cpu:.1f}s (its fetch process included); "
        f"over the service's whole life the garbage collector took {gc_seconds:.1f}s "
        f"({per_generation})"
    )
    print(f"raw samples: {raw}")


def _wait_for_checkpoint(
    port: int, ledger: int | None, service: subprocess.Popen[bytes], family: Family | None = None
) -> None:
    """Until the service reports a checkpoint (at or past `ledger`, when given)."""
    with httpx.Client(timeout=10) as client:
        while True:
            if family is not None:
                family.sample()
            if service.poll() is not None:
                raise RuntimeError("the service exited early; see service.log")
            try:
                found = client.get(f"http://127.0.0.1:{port}/health").json()
            except httpx.TransportError:
                found = {}
            checkpoint = found.get("last_processed_ledger")
            if checkpoint is not None and (ledger is None or checkpoint >= ledger):
                return
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ledgers", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--output", type=Path, default=Path("bench-profile"))
    parser.add_argument("--postgres-url", default=admin_url())
    profile(parser.parse_args())


if __name__ == "__main__":
    main()
