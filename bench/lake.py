"""What reading events out of ledger metadata costs: stellar-sdk's full decode against the walker.

    python -m bench.lake [--runs 15] [--ledgers 2000] [--events-per-ledger 20]

1. The real mainnet Galexie object (ledger 53312000, 163 transactions, 372 KB of XDR):
   a full stellar-sdk decode of the LedgerCloseMetaBatch, the reference extraction
   (stellar-sdk decode plus the event walk over its objects), and the walker
   (metaevents.batch_ledgers). Medians and minimums over `--runs` runs, after one warm-up.
2. The walker's one-time cost: compiling its skippers from stellar-sdk's layouts, measured in
   a fresh interpreter (import of stellar_reconciler.metaevents).
3. A directory lake of the simulated network read back through lake.Lake (zstd, parse,
   hash chain): ledgers/s and events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard
from obstore.store import LocalStore
from stellar_sdk import xdr

from stellar_reconciler.lake import Lake, LakeLayout
from stellar_reconciler.metaevents import batch_ledgers
from stellar_reconciler.metasdk import ledger_events_with_sdk
from stellar_reconciler.simnet import lake as simlake
from stellar_reconciler.simnet.config import SimNetConfig
from stellar_reconciler.simnet.network import SimNetwork

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/stellar-rpc/mainnet_LedgerCloseMetaBatch_53312000.xdr.zstd"
)


def _timed(function: Callable[[], object], runs: int) -> dict[str, float]:
    function()  # warm-up: caches, lazy compilation
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples)}


def decode_times(runs: int) -> dict[str, dict[str, float]]:
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(FIXTURE.read_bytes())) as reader:
        data = reader.read()
    meta = xdr.LedgerCloseMetaBatch.from_xdr_bytes(data).ledger_close_metas[0].to_xdr_bytes()
    return {
        "stellar-sdk full decode": _timed(
            lambda: xdr.LedgerCloseMetaBatch.from_xdr_bytes(data), runs
        ),
        "stellar-sdk decode + events": _timed(lambda: ledger_events_with_sdk(meta), runs),
        "walker (metaevents)": _timed(lambda: batch_ledgers(data), runs),
    }


def compile_time() -> float:
    # What metaevents imports besides its skippers is loaded first, so only they are timed.
    code = (
        "import stellar_sdk.xdr, stellar_reconciler.errors, stellar_reconciler.models, time; "
        "import stellar_reconciler.meta_ledger, stellar_reconciler.metasdk; "
        "t = time.perf_counter(); import stellar_reconciler.metaevents; "
        "print((time.perf_counter() - t) * 1000)"
    )
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return float(output.stdout)


def lake_read(ledgers: int, per_ledger: int) -> dict[str, Any]:
    ledgers = -(-ledgers // 8) * 8  # whole objects of 8 ledgers
    network = SimNetwork(
        SimNetConfig(
            seed=3, first_ledger=1024, prebuilt_ledgers=ledgers, events_per_ledger=per_ledger
        )
    )
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp:
        store = LocalStore(tmp)
        last = 1024 + ledgers - 1
        simlake.publish(network, store, 1024, last, LakeLayout(network.passphrase, 8, 64))

        async def read() -> int:
            count = 0
            async for ledger in Lake(store, network.passphrase).ledgers(1024, last):
                count += len(ledger.events)
            return count

        start = time.perf_counter()
        events = asyncio.run(read())
        seconds = time.perf_counter() - start
    return {
        "ledgers": ledgers,
        "events": events,
        "ledgers_per_s": ledgers / seconds,
        "events_per_s": events / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lake", description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--ledgers", type=int, default=2000)
    parser.add_argument("--events-per-ledger", type=int, default=20)
    args = parser.parse_args()
    times = decode_times(args.runs)
    print(f"mainnet ledger 53312000, {args.runs} runs: {'median ms':>10} {'min ms':>8}")
    for name, row in times.items():
        print(f"  {name:<37} {row['median_ms']:>10.1f} {row['min_ms']:>8.1f}")
    full = times["stellar-sdk full decode"]["median_ms"]
    walker = times["walker (metaevents)"]["median_ms"]
    print(f"  walker speed-up over the full decode (medians): {full / walker:.1f}x")
    print(f"one-time skipper compilation at import: {compile_time():.0f} ms")
    read = lake_read(args.ledgers, args.events_per_ledger)
    print(
        f"directory lake read, {read['ledgers']} ledgers / {read['events']} events: "
        f"{read['ledgers_per_s']:.0f} ledgers/s, {read['events_per_s']:.0f} events/s"
    )


if __name__ == "__main__":
    main()
