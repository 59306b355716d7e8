"""The two ceilings the service's catch-up is compared with, each in its own process.

    python -m bench.ceilings fetch --rpc URL --first F --last L
    python -m bench.ceilings write --rpc URL --first F --last L --database URL [--database URL]

`fetch`: the history paged from the RPC and decoded exactly as the worker's fetch side does
it, nothing written. `write`: the same batches (read untimed) committed through
Store.commit_batch, one transaction per batch as the worker commits them, and only the
commits timed; with several databases each batch goes to each in turn, so the history is
read once. Each prints one JSON object on its last line of output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

from bench.history import read_batches, rpc_client
from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.config import sqlalchemy_url
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import Store

FINGERPRINT = "bench"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def fetch_ceiling(rpc_url: str, first: int, last: int) -> dict[str, Any]:
    events = ledgers = 0
    async with rpc_client() as client:
        rpc = StellarRpc(client, rpc_url)
        started, cpu = time.perf_counter(), _cpu()
        async for batch in read_batches(rpc, first, last):
            events += len(batch.events)
            ledgers += len(batch.ledgers)
        seconds = time.perf_counter() - started
    return {"events": events, "ledgers": ledgers, "seconds": seconds, "cpu": _cpu() - cpu}


async def write_ceiling(
    rpc_url: str, first: int, last: int, database_urls: list[str]
) -> dict[str, Any]:
    stores = [Store.open(sqlalchemy_url(url)) for url in database_urls]
    for store in stores:
        store.migrate()
        store.ensure_stream(first, FINGERPRINT)
    seconds = [0.0] * len(stores)
    cpu = [0.0] * len(stores)
    events = ledgers = batches = 0
    try:
        async with rpc_client() as client:
            rpc = StellarRpc(client, rpc_url)
            async for batch in read_batches(rpc, first, last):
                for i, store in enumerate(stores):
                    started, cpu_started = time.perf_counter(), _cpu()
                    store.commit_batch(batch)
                    seconds[i] += time.perf_counter() - started
                    cpu[i] += _cpu() - cpu_started
                events += len(batch.events)
                ledgers += len(batch.ledgers)
                batches += 1
        stored = [store.event_count() for store in stores]
    finally:
        for store in stores:
            store.close()
    if any(count != events for count in stored):
        raise RuntimeError(f"wrote {events} events but the databases hold {stored}")
    return {
        "events": events,
        "ledgers": ledgers,
        "batches": batches,
        "databases": [{"seconds": s, "cpu": c} for s, c in zip(seconds, cpu, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["fetch", "write"])
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--last", type=int, required=True)
    parser.add_argument("--database", action="append", default=[])
    args = parser.parse_args()
    # Tuned as the service tunes itself, so neither side of a ratio is flattered.
    tune_garbage_collector()
    if args.kind == "fetch":
        result = asyncio.run(fetch_ceiling(args.rpc, args.first, args.last))
    else:
        if not args.database:
            parser.error("write needs at least one --database")
        result = asyncio.run(write_ceiling(args.rpc, args.first, args.last, args.database))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
