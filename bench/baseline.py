"""The first design, kept honest so the speed-up is measured against something real.

    python -m bench.baseline --rpc URL --database URL --first F --ledgers N [--per-ledger-tx]

Per ledger, in sequence: ask the RPC for that ledger's header and events (the two requests
in flight together, so one round trip), decode the events, then write them as the first
design did: each event with its own INSERT, the ledger row, then the checkpoint UPDATE, every
statement committed on its own (the first design wrote the event and the checkpoint in two
separate statements). `--per-ledger-tx` is a kinder variant that wraps one ledger's
statements in one transaction, reported beside it so the speed-up is not flattered by the
per-statement commits alone. Same RPC client, decoder, schema and engine settings as the
service; only the shape of the loop differs. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, update

from bench.history import rpc_client
from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.config import sqlalchemy_url
from stellar_reconciler.decode import decode_event
from stellar_reconciler.models import LedgerRecord, RawEvent, utc_from_unix
from stellar_reconciler.pager import MAX_EVENTS_PAGE
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import Store
from stellar_reconciler.store.database import write_transaction
from stellar_reconciler.store.repository import event_row, ledger_row
from stellar_reconciler.store.schema import checkpoints, events, ledgers


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def ledger_events(rpc: StellarRpc, sequence: int) -> list[RawEvent]:
    """Every event of one ledger; a full page means more may follow the cursor."""
    page = await rpc.get_events(
        start_ledger=sequence, end_ledger=sequence + 1, limit=MAX_EVENTS_PAGE
    )
    found = list(page.events)
    while len(page.events) == MAX_EVENTS_PAGE:
        page = await rpc.get_events(cursor=page.cursor, limit=MAX_EVENTS_PAGE)
        found.extend(e for e in page.events if e.ledger == sequence)
    return found


def _statements(store: Store, record: LedgerRecord, raw_events: list[RawEvent]) -> list[Any]:
    decoded = [decode_event(raw) for raw in raw_events]
    moves_checkpoint = (
        update(checkpoints)
        .where(
            and_(
                checkpoints.c.stream == store.stream,
                checkpoints.c.ledger == record.sequence - 1,
            )
        )
        .values(ledger=record.sequence, updated_at=datetime.now(UTC))
    )
    return [
        *(insert(events).values(event_row(event)) for event in decoded),
        insert(ledgers).values(ledger_row(record)),
        moves_checkpoint,
    ]


def write_ledger(
    store: Store, record: LedgerRecord, raw_events: list[RawEvent], per_ledger_tx: bool
) -> None:
    statements = _statements(store, record, raw_events)
    moved = 0
    if per_ledger_tx:
        with write_transaction(store.engine) as conn:
            for statement in statements:
                moved = conn.execute(statement).rowcount
    else:
        for statement in statements:
            with write_transaction(store.engine) as conn:
                moved = conn.execute(statement).rowcount
    if moved != 1:
        raise RuntimeError(f"checkpoint is not at ledger {record.sequence - 1}")


async def run_baseline(
    rpc_url: str, database_url: str, first: int, count: int, per_ledger_tx: bool = False
) -> dict[str, Any]:
    store = Store.open(sqlalchemy_url(database_url))
    store.migrate()
    store.ensure_stream(first, "bench")
    total = 0
    try:
        async with rpc_client() as client:
            rpc = StellarRpc(client, rpc_url)
            started, cpu = time.perf_counter(), _cpu()
            for sequence in range(first, first + count):
                page, raw_events = await asyncio.gather(
                    rpc.get_ledgers(sequence, limit=1), ledger_events(rpc, sequence)
                )
                header = page.ledgers[0]
                record = LedgerRecord(
                    header.sequence,
                    header.hash,
                    header.previous_hash,
                    utc_from_unix(header.close_time),
                    len(raw_events),
                )
                write_ledger(store, record, raw_events, per_ledger_tx)
                total += len(raw_events)
            seconds = time.perf_counter() - started
            cpu = _cpu() - cpu
        stored = store.event_count()
    finally:
        store.close()
    if stored != total:
        raise RuntimeError(f"wrote {total} events but the database holds {stored}")
    return {"events": total, "ledgers": count, "seconds": seconds, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--ledgers", type=int, required=True)
    parser.add_argument("--per-ledger-tx", action="store_true")
    args = parser.parse_args()
    # Tuned as the service tunes itself, so neither side of a ratio is flattered.
    tune_garbage_collector()
    result = asyncio.run(
        run_baseline(args.rpc, args.database, args.first, args.ledgers, args.per_ledger_tx)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
