"""Backfill in chunks on PostgreSQL with 1, 2 and 4 `reconciler backfill-worker` processes:
ledgers/s, events/s and each worker's peak memory.

    python -m bench.backfill_chunks [--ledgers 20000] [--events-per-ledger 50]
        [--chunk-ledgers 2500] [--workers 1,2,4] [--source lake|rpc] [--json results.json]

The simulated network builds its history, publishes it as a SEP-54 lake in a directory and
keeps the last --rpc-ledgers of it in its RPC (with --source rpc it keeps everything). For
each number of workers, in a fresh PostgreSQL database: `reconciler run` indexes the ledgers
the RPC keeps and stops; the workers start and register with the queue; `reconciler backfill
--queue-only` queues every ledger before those (from the lake, or from the RPC with --source
rpc) and waits. Timed from the moment the first chunk is taken until every chunk is done
(read from backfill_chunks every 50 ms). Each worker's peak resident memory (VmHWM) and CPU
are read from /proc before it is stopped. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from bench.databases import admin_url, fresh_database, postgres_available
from bench.procstat import MachineCpu, children, cpu_seconds, memory_kib, stop
from bench.service import running_service
from bench.simnet import Simnet, running_simnet

POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 1800.0
# Settings of ours the bench sets itself: never taken from the caller's environment.
OWN_SETTINGS = ("DATABASE_URL", "STELLAR_RPC_URL", "LAKE_URL", "CONTRACT_IDS", "EVENT_TOPICS")
CLI = [sys.executable, "-m", "stellar_reconciler.cli"]
T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout: float = TIMEOUT_SECONDS) -> T:
    """The first true value `check` returns, polled every 50 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{what}: not within {timeout:.0f}s")


def registered_workers(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
    return int(row[0]) if row else 0


def chunk_states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT state, count(*) FROM backfill_chunks GROUP BY state").fetchall()
    return {state: int(count) for state, count in rows}


def every_chunk_finished(states: dict[str, int]) -> bool:
    return bool(states) and set(states) <= {"done", "failed"}


def index_tip(net: Simnet, database_url: str, start: int, workdir: Path) -> None:
    """`reconciler run` from `start` until its checkpoint is the network's tip, then stopped:
    the checkpoint a backfill must stay behind."""
    log = workdir / "service.log"
    with running_service(database_url, net.url, start, log) as service:
        wait_until(lambda: service.checkpoint() == net.latest_ledger, "the service's catch-up")


def worker_environment(database_url: str, net: Simnet, lake_url: str, chunk: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in OWN_SETTINGS}
    env.update(
        DATABASE_URL=database_url,
        STELLAR_RPC_URL=net.url,
        LAKE_URL=lake_url,
        BACKFILL_CHUNK_LEDGERS=str(chunk),
        LOG_LEVEL="warning",
        LOG_FORMAT="json",
    )
    return env


@contextmanager
def backfill_workers(
    env: dict[str, str], count: int, log: Path, conn: psycopg.Connection[Any]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` backfill-worker processes, registered with the queue before this yields."""
    command = [*CLI, "backfill-worker"]
    with log.open("ab") as sink:
        started = [
            subprocess.Popen(command, env=env, stdout=sink, stderr=sink) for _ in range(count)
        ]
    try:
        wait_until(lambda: registered_workers(conn) >= count, f"{count} workers", 120)
        yield started
    finally:
        for process in started:
            stop(process, 30)


def timed_backfill(
    conn: psycopg.Connection[Any], env: dict[str, str], first: int, last: int, workdir: Path
) -> tuple[float, float]:
    """`reconciler backfill --queue-only` of first..last: seconds from the first chunk taken to
    the last one finished, and seconds the whole command took (its start-up and planning too)."""
    command = [*CLI, "backfill", "--queue-only", "--from", str(first), "--to", str(last)]
    asked = time.monotonic()
    with (workdir / "backfill.log").open("ab") as sink:
        backfill = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    try:
        wait_until(lambda: set(chunk_states(conn)) - {"pending"}, "a chunk taken")
        started = time.monotonic()
        wait_until(lambda: every_chunk_finished(chunk_states(conn)), "every chunk done")
        finished = time.monotonic()
        code = backfill.wait(TIMEOUT_SECONDS)
    finally:
        if backfill.poll() is None:
            stop(backfill, 10)
    if code != 0:
        raise RuntimeError(f"reconciler backfill exited with {code}; see {workdir}")
    return finished - started, time.monotonic() - asked


def family_kib(pid: int, key: str) -> int:
    """VmHWM or VmRSS of a process and of any children it started, in KiB."""
    return memory_kib(pid).get(key, 0) + sum(memory_kib(c).get(key, 0) for c in children(pid))


def run_one(
    net: Simnet, workdir: Path, lake_url: str, args: argparse.Namespace, count: int
) -> dict[str, Any]:
    indexed_from = net.latest_ledger - args.rpc_ledgers + 1
    first, last = net.first_ledger, indexed_from - 1
    with (
        fresh_database("postgres", workdir, admin_url()) as database_url,
        # One connection reads the chunks every 50 ms: a new one each time would fork a
        # PostgreSQL backend each time, on the same two cores as the workers.
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        index_tip(net, database_url, indexed_from, workdir)
        env = worker_environment(database_url, net, lake_url, args.chunk_ledgers)
        load_before = os.getloadavg()[0]
        with backfill_workers(env, count, workdir / "workers.log", conn) as workers:
            idle_mb = [family_kib(w.pid, "VmRSS") / 1024 for w in workers]
            cpu_before = [cpu_seconds(w.pid) for w in workers]
            machine_before = MachineCpu.now()
            seconds, command_secs = timed_backfill(conn, env, first, last, workdir)
            machine_busy = MachineCpu.now().busy_cores_since(machine_before)
            peak_mb = [family_kib(w.pid, "VmHWM") / 1024 for w in workers]
            cpu = [cpu_seconds(w.pid) - b for w, b in zip(workers, cpu_before, strict=True)]
        load_after = os.getloadavg()[0]
        states, chunks, ledgers, events, takers = conn.execute(
            "SELECT string_agg(DISTINCT state, ','), count(*), sum(ledgers_written), "
            "sum(events_written), count(DISTINCT worker) FROM backfill_chunks"
        ).fetchone() or (None, 0, 0, 0, 0)
    return {
        "workers": count,
        "first_ledger": first,
        "last_ledger": last,
        "chunks": chunks,
        "chunk_states": states,
        "workers_that_took_chunks": takers,
        "ledgers": int(ledgers),
        "events": int(events),
        "seconds": seconds,
        "command_seconds": command_secs,
        "ledgers_per_s": int(ledgers) / seconds,
        "events_per_s": int(events) / seconds,
        "worker_idle_rss_mb": idle_mb,
        "worker_peak_rss_mb": peak_mb,
        "worker_cpu_s": cpu,
        "machine_busy_cores": machine_busy,
        "load_average": [load_before, load_after],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledgers", type=int, default=20000)
    parser.add_argument("--events-per-ledger", type=int, default=50)
    parser.add_argument("--chunk-ledgers", type=int, default=2500)
    parser.add_argument("--rpc-ledgers", type=int, default=500, help="ledgers the RPC keeps")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--source", choices=("lake", "rpc"), default="lake")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    why_not = postgres_available(admin_url())
    if why_not is not None:
        sys.exit(f"PostgreSQL is needed (the queue lives there): {why_not}")
    counts = [int(c) for c in args.workers.split(",") if c]
    retention = args.rpc_ledgers if args.source == "lake" else args.ledgers + 1
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores; load average {load:.1f} at the start")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        built = time.monotonic()
        with running_simnet(
            args.ledgers,
            args.events_per_ledger,
            log=workdir / "simnet.log",
            retention_window=retention,
            lake_dir=workdir / "lake",
        ) as net:
            print(f"history and lake built in {time.monotonic() - built:.0f}s")
            for count in counts:
                result = run_one(net, workdir, f"file://{workdir / 'lake'}", args, count)
                results.append(result)
                print(json.dumps(result), flush=True)
    print_table(results, args)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"arguments": vars(args) | {"json": None}, "runs": results})
        )


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    first = results[0]
    print(
        f"\nledgers {first['first_ledger']}-{first['last_ledger']} from the {args.source}, "
        f"{first['events']:,} events, {first['chunks']} chunks of {args.chunk_ledgers}\n"
    )
    print(
        "| workers | seconds | ledgers/s | events/s | peak RSS per worker, MB | "
        "idle RSS per worker, MB | CPU per worker, s | machine busy, cores | load average |"
    )
    print("|---:|---:|---:|---:|---|---|---|---:|---|")
    for r in results:
        print(
            f"| {r['workers']} | {r['seconds']:.1f} | {r['ledgers_per_s']:,.0f} "
            f"| {r['events_per_s']:,.0f} | {_list(r['worker_peak_rss_mb'])} "
            f"| {_list(r['worker_idle_rss_mb'])} | {_list(r['worker_cpu_s'])} "
            f"| {r['machine_busy_cores']:.2f} | {_list(r['load_average'], '.1f', '-')} |"
        )


def _list(values: list[float], spec: str = ".0f", between: str = " / ") -> str:
    return between.join(f"{v:{spec}}" for v in values)


if __name__ == "__main__":
    main()
