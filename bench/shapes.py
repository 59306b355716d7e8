"""What recording event shapes costs per event, next to what decoding the event costs.

    python -m bench.shapes [--ledgers 1000] [--events-per-ledger 50] [--databases sqlite,postgres]

CPU: decode every event of a simulated history as the worker does (answers.parse_event, then
decode.decode_event), then work out each event's shape (shapes.shape_of), best of five
passes each.
Commit: the same history committed in batches of 100 ledgers into a fresh database with the
ShapeWatch hook, timed inside (what it adds to the batch's transaction) and the rest of the
commit beside it. Two histories: as built, and with the token's transfers
upgraded to decimal strings half-way (every later transfer has an unreadable amount, and one
record waits for them: the hook's slow path). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from bench.databases import admin_url, fresh_database, postgres_available
from stellar_reconciler.answers import parse_event
from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.decode import decode_event
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.models import Batch, Event, LedgerRecord, utc_from_unix
from stellar_reconciler.shapes import shape_of
from stellar_reconciler.simnet import SimNetConfig, SimNetwork
from stellar_reconciler.store import BatchHook, ShapeWatch, Store

BATCH_LEDGERS = 100
PASSES = 5


def _history(net: SimNetwork) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    first, last = net.first_ledger, net.latest_ledger
    return net.record_events(first, last), net.record_ledgers(first, last)


def _batches(events: Sequence[Event], ledgers: Sequence[dict[str, Any]]) -> list[Batch]:
    batches = []
    for start in range(0, len(ledgers), BATCH_LEDGERS):
        part = ledgers[start : start + BATCH_LEDGERS]
        first, last = part[0]["sequence"], part[-1]["sequence"]
        records = tuple(
            LedgerRecord(
                sequence=x["sequence"],
                hash=x["hash"],
                previous_hash=x["previousLedgerHash"],
                closed_at=utc_from_unix(x["closeTime"]),
                event_count=x["eventCount"],
            )
            for x in part
        )
        inside = tuple(e for e in events if first <= e.ledger <= last)
        batches.append(Batch(first, last, records, inside))
    return batches


def _best(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(PASSES):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def _shapes(events: Sequence[Event]) -> None:
    for event in events:
        shape_of(event)


class _Timed:
    """A hook, timed: the seconds spent inside it, within the batches' transactions."""

    def __init__(self, hook: BatchHook) -> None:
        self.hook = hook
        self.seconds = 0.0

    def __call__(self, conn: Connection, batch: Batch) -> None:
        started = time.perf_counter()
        self.hook(conn, batch)
        self.seconds += time.perf_counter() - started


def _commit_seconds(
    url: str, net: SimNetwork, batches: Sequence[Batch], hooks: Sequence[BatchHook]
) -> float:
    store = Store.open(url)
    try:
        store.migrate()
        store.ensure_stream(net.first_ledger, "bench")
        store.expectations.create(
            [
                ExpectationSpec.model_validate(
                    {
                        "external_id": "waits",
                        "contract_id": net.token_contract_id,
                        "event_name": "transfer",
                        "amount": "1",
                        "deadline_ledger": net.latest_ledger + 1_000_000,
                    }
                )
            ]
        )
        started = time.perf_counter()
        for batch in batches:
            store.commit_batch(batch, hooks)
        return time.perf_counter() - started
    finally:
        store.close()


def measure(args: argparse.Namespace, upgraded: bool, databases: Sequence[str]) -> dict[str, Any]:
    config = SimNetConfig(
        seed=11,
        first_ledger=1000,
        prebuilt_ledgers=args.ledgers,
        events_per_ledger=args.events_per_ledger,
        upgrade_ledger=1000 + args.ledgers // 2 if upgraded else None,
        upgrade_shape="string",
    )
    net = SimNetwork(config)
    recorded, ledgers = _history(net)
    raws = [parse_event(item) for item in recorded]
    decode_s = _best(lambda: [decode_event(raw) for raw in raws])
    events = [decode_event(raw) for raw in raws]
    shape_s = _best(lambda: _shapes(events))
    row: dict[str, Any] = {
        "history": "upgraded half-way" if upgraded else "as built",
        "events": len(events),
        "decode_us": decode_s / len(events) * 1e6,
        "shape_us": shape_s / len(events) * 1e6,
    }
    batches = _batches(events, ledgers)
    with tempfile.TemporaryDirectory() as workdir:
        for kind in databases:
            timed = _Timed(ShapeWatch())
            with fresh_database(kind, Path(workdir), args.postgres) as url:
                total = _commit_seconds(url, net, batches, [timed])
            row[f"{kind}_commit_us"] = (total - timed.seconds) / len(events) * 1e6
            row[f"{kind}_hook_us"] = timed.seconds / len(events) * 1e6
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledgers", type=int, default=1000)
    parser.add_argument("--events-per-ledger", type=int, default=50)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--postgres", default=admin_url())
    args = parser.parse_args()
    # As the service runs: rarer young collections (collector.py).
    tune_garbage_collector()
    databases = [d for d in args.databases.split(",") if d]
    if "postgres" in databases and (why := postgres_available(args.postgres)) is not None:
        print(f"PostgreSQL skipped: {why}")
        databases.remove("postgres")
    rows = [measure(args, upgraded, databases) for upgraded in (False, True)]
    columns = ["history", "events", "decode_us", "shape_us"]
    for kind in databases:
        columns += [f"{kind}_commit_us", f"{kind}_hook_us"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
