"""What large ledger metadata costs a catch-up: the same history with each LedgerCloseMeta
padded to mainnet-like sizes.

    python -m bench.meta [--ledgers 600] [--events-per-ledger 20] [--padding 0,100000,300000]

getLedgers sends every ledger's whole metadata, which the service does not keep (it needs the
header only), so a larger meta means more bytes to receive and parse for the same events. The
service sizes its getLedgers pages to a byte budget (pager.LEDGER_PAGE_BUDGET_BYTES), so
memory stays bounded while the number of pages grows. For each padding this prints ledgers/s,
events/s, getLedgers calls and peak memory of the service catching up on SQLite, with every
setting at its default. The history is held in the simulated network's memory, so keep
ledgers x padding to a few hundred MB.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.catchup import measure_catch_up
from bench.simnet import running_simnet


def measure(ledgers: int, per_ledger: int, padding: int, workdir: Path) -> dict[str, Any]:
    with running_simnet(
        ledgers, per_ledger, log=workdir / "simnet.log", meta_padding=padding
    ) as net:
        database = f"sqlite:///{workdir / f'meta-{padding}.db'}"
        found = measure_catch_up(net, database, workdir / "service.log")
    ledgers_done = found["ledgers"]
    calls = found["rpc_calls"]
    return {
        "meta_padding_bytes": padding,
        "ledgers_per_s": ledgers_done / found["seconds"],
        "getLedgers_calls": calls.get("getLedgers", 0),
        "getEvents_calls": calls.get("getEvents", 0),
        "peak_rss_mb": found["peak_rss_mb"],
        "seconds": found["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.meta", description=__doc__)
    parser.add_argument("--ledgers", type=int, default=600)
    parser.add_argument("--events-per-ledger", type=int, default=20)
    parser.add_argument("--padding", default="0,100000,300000")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-meta-") as tmp:
        for padding in (int(p) for p in args.padding.split(",")):
            rows.append(measure(args.ledgers, args.events_per_ledger, padding, Path(tmp)))
    print(f"{'meta bytes/ledger':>18} {'ledgers/s':>10} {'getLedgers':>11} {'peak RSS MB':>12}")
    for row in rows:
        print(
            f"{row['meta_padding_bytes']:>18,} {row['ledgers_per_s']:>10.0f} "
            f"{row['getLedgers_calls']:>11.0f} {row['peak_rss_mb']:>12.0f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
