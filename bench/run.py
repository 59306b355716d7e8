"""`make bench`: catch-up, the first design's baseline, both ceilings and steady-state latency,
on SQLite and PostgreSQL, in one run; prints one table.

    python -m bench.run                        # 20,000 ledgers, 1,000,000 events, both databases
    python -m bench.run --quick                # 2,000 ledgers, 100,000 events, fewer samples
    python -m bench.run --ledgers 2000 --events 100000 --databases sqlite

Every measured program runs in its own process: the simulated network, the service, each
ceiling and the baseline. The machine's cores are shared, and the network's CPU is reported
beside each figure (the ceilings and the baseline pay for it just as the service does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

from bench.catchup import measure_catch_up
from bench.children import run_measured
from bench.databases import admin_url, fresh_database, postgres_available
from bench.latency import measure_latency
from bench.report import render_markdown, render_text, verdicts
from bench.simnet import running_simnet
from stellar_reconciler.config import sqlalchemy_url
from stellar_reconciler.store import Store

PHASES = ("catchup", "baseline", "fetch", "write", "latency")
# Mainnet has emitted roughly 600 to 1,000 contract events a ledger since protocol 23.
MAINNET_EVENTS_PER_LEDGER = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ledgers", type=int, default=20_000, help="ledgers of history")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in that history")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument(
        "--baseline-ledgers",
        type=int,
        default=1000,
        help="the baseline runs on this many first ledgers (it is slow) and is reported as a rate",
    )
    parser.add_argument(
        "--latency-samples", type=int, default=60, help="ledgers timed in steady state"
    )
    parser.add_argument(
        "--latency-events-per-ledger",
        default=f"history,{MAINNET_EVENTS_PER_LEDGER}",
        help="comma-separated events per ledger closed in steady state, one measurement each; "
        "'history' is the history's density",
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2,000 ledgers, 100,000 events, 200 baseline ledgers, 15 latency samples",
    )
    parser.add_argument("--postgres-url", default=admin_url(), help="a database to connect to")
    parser.add_argument(
        "--workdir", type=Path, help="keep SQLite files and logs here; none: a temporary directory"
    )
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.ledgers, args.events = 2000, 100_000
        args.baseline_ledgers, args.latency_samples = 200, 15
    if args.ledgers < 1 or args.events < args.ledgers:
        parser.error("need at least one ledger and at least one event per ledger")
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    per_ledger = args.events // args.ledgers
    try:
        args.latency_densities = [
            per_ledger if d.strip() == "history" else int(d)
            for d in args.latency_events_per_ledger.split(",")
            if d.strip()
        ]
    except ValueError:
        parser.error("--latency-events-per-ledger takes numbers or 'history'")
    unknown = set(args.databases) - {"sqlite", "postgres"} | set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown databases or phases: {sorted(unknown)}")
    return args


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def postgres_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def stored_events(database_url: str) -> int:
    store = Store.open(sqlalchemy_url(database_url))
    try:
        return store.event_count()
    finally:
        store.close()


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    per_ledger = args.events // args.ledgers
    results: dict[str, Any] = {
        "databases": args.databases,
        "config": {
            "ledgers": args.ledgers,
            "events_per_ledger": per_ledger,
            "baseline_ledgers": args.baseline_ledgers,
            "latency_samples": args.latency_samples,
            "latency_events_per_ledger": args.latency_densities,
            "command": " ".join(sys.argv),
        },
        "machine": {**machine(), "load_average_at_start": os.getloadavg()[0]},
    }
    if "postgres" in args.databases:
        results["machine"]["postgres"] = postgres_version(args.postgres_url)
    say(f"building the simulated history: {args.ledgers} ledgers, ~{per_ledger} events each")
    with running_simnet(args.ledgers, per_ledger, log=workdir / "simnet.log") as net:
        rpc = ["--rpc", net.url, "--first", str(net.first_ledger)]
        last = ["--last", str(net.latest_ledger)]
        for db in args.databases:
            if "catchup" in args.phases:
                say(f"{db}: the service catching up from an empty database")
                with fresh_database(db, workdir, args.postgres_url) as url:
                    found = measure_catch_up(net, url, workdir / f"service-{db}.log")
                    found["events"] = stored_events(url)
                results.setdefault("catchup", {})[db] = found
                say(f"{db}: {found['events']} events in {found['seconds']:.1f}s")
            if "baseline" in args.phases:
                say(f"{db}: the first design on the first {args.baseline_ledgers} ledgers")
                with fresh_database(db, workdir, args.postgres_url) as url:
                    count = min(args.baseline_ledgers, args.ledgers)
                    found = run_measured(
                        "bench.baseline",
                        [*rpc, "--database", url, "--ledgers", str(count)],
                        workdir / "baseline.log",
                        net.pid,
                    )
                results.setdefault("baseline", {})[db] = found
                say(f"{db}: the same, one transaction per ledger")
                with fresh_database(db, workdir, args.postgres_url) as url:
                    found = run_measured(
                        "bench.baseline",
                        [*rpc, "--database", url, "--ledgers", str(count), "--per-ledger-tx"],
                        workdir / "baseline-tx.log",
                        net.pid,
                    )
                results.setdefault("baseline_tx", {})[db] = found
        if "fetch" in args.phases:
            say("fetch-and-decode ceiling (nothing written)")
            results["fetch"] = run_measured(
                "bench.ceilings", ["fetch", *rpc, *last], workdir / "ceilings.log", net.pid
            )
        if "write" in args.phases:
            say("write ceiling (the same batches, only the commits timed)")
            results["write"] = _write_ceilings(args, workdir, rpc + last, net.pid)
    if "latency" in args.phases:
        for db in args.databases:
            for density in args.latency_densities:
                say(f"{db}: steady-state latency, a ledger a second, {density} events each")
                with fresh_database(db, workdir, args.postgres_url) as url:
                    latency = measure_latency(url, density, args.latency_samples, workdir)
                results.setdefault("latency", {}).setdefault(db, {})[str(density)] = latency
    return results


def _write_ceilings(
    args: argparse.Namespace, workdir: Path, rpc: list[str], simnet_pid: int
) -> dict[str, Any]:
    """One process reads the history once and commits each batch to every database."""
    with ExitStack() as stack:
        urls = [
            stack.enter_context(fresh_database(db, workdir, args.postgres_url))
            for db in args.databases
        ]
        found = run_measured(
            "bench.ceilings",
            ["write", *rpc, *[arg for url in urls for arg in ("--database", url)]],
            workdir / "ceilings.log",
            simnet_pid,
        )
    return {
        db: {"events": found["events"], "ledgers": found["ledgers"], **part}
        for db, part in zip(args.databases, found["databases"], strict=True)
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if "postgres" in args.databases:
        problem = postgres_available(args.postgres_url)
        if problem:
            sys.exit(f"PostgreSQL at {args.postgres_url}: {problem}; use --databases sqlite")
    load = os.getloadavg()[0]
    if load > 0.5:
        say(
            f"the machine is busy before we start (load average {load:.1f}); other processes "
            "share its cores with what is measured, so expect lower and noisier figures"
        )
    started = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
            results = run(args, Path(tmp))
    results["bench_seconds"] = time.perf_counter() - started
    print()
    print(render_markdown(results) if args.markdown else render_text(results))
    print()
    print("\n".join(verdicts(results)))
    print(f"\nbenchmark took {results['bench_seconds'] / 60:.1f} minutes")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
