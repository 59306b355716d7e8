"""The simulated history read the way the worker reads it: worker-sized ranges, events and
headers fetched together through the project's own pagers, decoded in a thread, assembled
into batches. The fetch-and-decode ceiling times this alone; the write ceiling feeds its
batches to the store."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import httpx

from stellar_reconciler.decode import decode_event
from stellar_reconciler.models import (
    Batch,
    Event,
    LedgerHeader,
    LedgerRecord,
    RawEvent,
    utc_from_unix,
)
from stellar_reconciler.pager import EventPager, LedgerPager
from stellar_reconciler.rpc import StellarRpc

# The worker's defaults: batches aim at this many events and span at most this many ledgers.
TARGET_BATCH_EVENTS = 10_000
MAX_BATCH_LEDGERS = 1000
FIRST_BATCH_LEDGERS = 10


def rpc_client() -> httpx.AsyncClient:
    """An HTTP client configured as the service configures its own."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
    )


def decode_all(raw_events: Sequence[RawEvent]) -> list[Event]:
    return [decode_event(raw) for raw in raw_events]


def assemble(
    first: int, headers: Sequence[LedgerHeader], events: list[Event], previous_hash: str | None
) -> Batch:
    """A batch with one ledger row per header and the hash chain checked, as the worker does."""
    counts = Counter(event.ledger for event in events)
    records = []
    for header in headers:
        if previous_hash is not None and header.previous_hash != previous_hash:
            raise RuntimeError(f"hash chain broken at ledger {header.sequence}")
        records.append(
            LedgerRecord(
                header.sequence,
                header.hash,
                header.previous_hash,
                utc_from_unix(header.close_time),
                counts.get(header.sequence, 0),
            )
        )
        previous_hash = header.hash
    return Batch(first, first + len(records) - 1, tuple(records), tuple(events))


async def read_batches(rpc: StellarRpc, first: int, last: int) -> AsyncIterator[Batch]:
    """Every ledger first..last with its events, in batches sized as the worker sizes them."""
    events = EventPager(rpc, [[]])
    ledgers = LedgerPager(rpc)
    events.reset(first)
    per_ledger: float | None = None
    previous_hash: str | None = None
    next_ledger = first
    while next_ledger <= last:
        if per_ledger is None:
            size = FIRST_BATCH_LEDGERS
        else:
            size = int(TARGET_BATCH_EVENTS / max(per_ledger, 0.01))
        size = max(1, min(MAX_BATCH_LEDGERS, size))
        end = min(last, next_ledger + size - 1)
        (raw, through), headers = await asyncio.gather(
            events.take(end, max_events=2 * TARGET_BATCH_EVENTS),
            ledgers.headers(next_ledger, end),
        )
        decoded = await asyncio.to_thread(decode_all, raw)
        batch = assemble(next_ledger, headers[: through - next_ledger + 1], decoded, previous_hash)
        rate = len(batch.events) / len(batch.ledgers)
        per_ledger = rate if per_ledger is None else 0.7 * per_ledger + 0.3 * rate
        previous_hash = batch.ledgers[-1].hash
        next_ledger = batch.last_ledger + 1
        yield batch
