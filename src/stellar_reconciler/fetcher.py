"""RangeFetcher: complete ledger ranges from the RPC, decoded and hash-checked.

The worker uses one to follow the tip; maintenance jobs (re-verification, gap filling,
rescans) use their own, so their paging state never mixes with the follower's. The worker
reads its batches from a BatchSource: InProcessSource here, fetch_process.FetchProcess (a child
process) for a long catch-up, chosen between by fetch_process.CatchUpSource; both follow a range
with follow_range and the same BatchSizing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stellar_reconciler.decode import decode_event
from stellar_reconciler.errors import (
    ChainBreakError,
    DecodeError,
    RpcProtocolError,
    RpcTransientError,
)
from stellar_reconciler.models import Batch, Event, LedgerHeader, LedgerRecord, RawEvent
from stellar_reconciler.models import utc_from_unix as _utc
from stellar_reconciler.pager import EventPager, LedgerPager
from stellar_reconciler.rpc import StellarRpc

# Aim for batches of about this many events: big enough to amortise a commit, small enough
# that memory stays bounded on mainnet (~1,000 events a ledger). Measured (docs/benchmarks.md):
# 10,000 catches up ~13% faster on SQLite but takes the service and its fetch process past
# their 300 MB budget.
TARGET_BATCH_EVENTS = 5_000
# The most ledgers a batch spans unless configured otherwise (BATCH_MAX_LEDGERS).
MAX_BATCH_LEDGERS = 1000


def build_batch(
    first: int, headers: Sequence[LedgerHeader], events: Sequence[Event], previous_hash: str | None
) -> Batch:
    """Assemble a batch, proving the hash chain runs unbroken through it."""
    counts = Counter(event.ledger for event in events)
    records: list[LedgerRecord] = []
    expected = previous_hash
    for header in headers:
        if expected is not None and header.previous_hash != expected:
            error = ChainBreakError(header.sequence, expected, header.previous_hash)
            if records:
                kept = [e for e in events if e.ledger < header.sequence]
                error.valid_prefix = Batch(first, header.sequence - 1, tuple(records), tuple(kept))
            raise error
        records.append(
            LedgerRecord(
                sequence=header.sequence,
                hash=header.hash,
                previous_hash=header.previous_hash,
                closed_at=_utc(header.close_time),
                event_count=counts.get(header.sequence, 0),
            )
        )
        expected = header.hash
    last = first + len(records) - 1
    stray = [e.id for e in events if not first <= e.ledger <= last]
    if stray:
        raise RpcProtocolError("getEvents", f"events outside ledgers {first}-{last}: {stray[:3]}")
    return Batch(first, last, tuple(records), tuple(events))


def decode_events(raw_events: Sequence[RawEvent]) -> list[Event]:
    try:
        return [decode_event(raw) for raw in raw_events]
    except DecodeError as exc:
        raise RpcProtocolError("getEvents", str(exc)) from exc


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that brought a task group down (the others are its cancellations)."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


class RangeFetcher:
    """Fetches consecutive ledger ranges: every header (hash-verified) and every event."""

    def __init__(self, rpc: StellarRpc, filter_sets: list[list[dict[str, Any]]]) -> None:
        # Pages no larger than a batch: a bigger page only sits in memory until later batches.
        self.events = EventPager(rpc, filter_sets, page_limit=TARGET_BATCH_EVENTS)
        self.ledgers = LedgerPager(rpc)

    def reset(self, next_ledger: int) -> None:
        self.events.reset(next_ledger)

    @property
    def next_ledger(self) -> int:
        return self.events.next_ledger

    async def fetch(
        self,
        first: int,
        last: int,
        previous_hash: str | None,
        max_events: int | None = 2 * TARGET_BATCH_EVENTS,
    ) -> Batch:
        """The batch starting at `first` (the fetcher's position) and ending at `last`, or
        earlier at a ledger boundary once `max_events` events are in hand."""
        if first != self.next_ledger:
            self.reset(first)
        try:
            # Headers and events come from two different methods; ask for both at once.
            async with asyncio.TaskGroup() as group:
                events_task = group.create_task(self.events.take(last, max_events=max_events))
                headers_task = group.create_task(self.ledgers.headers(first, last))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        raw_events, through = events_task.result()
        decoded = await asyncio.to_thread(decode_events, raw_events)
        headers = headers_task.result()[: through - first + 1]
        return build_batch(first, headers, decoded, previous_hash)

    def batches(self, first: int, last: int, previous_hash: str | None) -> AsyncIterator[Batch]:
        """first..last as consecutive batches of about TARGET_BATCH_EVENTS events each, sized
        as the worker sizes its own (each fetch asks only for the headers its span needs)."""
        sizer = BatchSizer(MAX_BATCH_LEDGERS, TARGET_BATCH_EVENTS)
        return follow_range(self, sizer, first, last, previous_hash, TARGET_BATCH_EVENTS)


class BatchSizer:
    """Chooses how many ledgers the next batch spans, from the events per ledger seen so far."""

    def __init__(self, max_ledgers: int, target_events: int) -> None:
        self.max_ledgers = max_ledgers
        self.target_events = target_events
        self._events_per_ledger = 0.0
        self._seen = False
        # Lowered after a failed fetch so the ledgers before a bad one still get committed;
        # doubles back with every success.
        self._cap = max_ledgers

    def observe(self, ledgers: int, events: int) -> None:
        rate = events / max(ledgers, 1)
        self._events_per_ledger = (
            rate if not self._seen else 0.7 * self._events_per_ledger + 0.3 * rate
        )
        self._seen = True
        self._cap = min(self.max_ledgers, self._cap * 2)

    def shrink(self, failed_size: int) -> None:
        self._cap = max(1, failed_size // 2)

    def next_size(self) -> int:
        if not self._seen:
            return min(self.max_ledgers, self._cap, 10)
        ideal = self.target_events / max(self._events_per_ledger, 0.01)
        return max(1, min(self.max_ledgers, self._cap, int(ideal)))


async def follow_range(
    fetcher: RangeFetcher,
    sizer: BatchSizer,
    first: int,
    target: int,
    previous_hash: str | None,
    max_events: int,
) -> AsyncGenerator[Batch, None]:
    """first..target as consecutive batches sized by `sizer`, each chained to the one before.

    A range whose fetch still fails after the RPC client's retries is tried again smaller, so
    the ledgers before a bad one still reach the caller; a single ledger that fails raises.
    A ChainBreakError carries the part of its range that does chain (valid_prefix).
    """
    fetcher.reset(first)
    next_ledger = first
    while next_ledger <= target:
        last = min(target, next_ledger + sizer.next_size() - 1)
        try:
            batch = await fetcher.fetch(next_ledger, last, previous_hash, max_events)
        except RpcTransientError:
            if last == next_ledger:
                raise
            sizer.shrink(last - next_ledger + 1)
            fetcher.reset(next_ledger)
            continue
        sizer.observe(len(batch.ledgers), len(batch.events))
        previous_hash = batch.ledgers[-1].hash
        next_ledger = batch.last_ledger + 1
        yield batch


@dataclass(frozen=True, slots=True)
class BatchSizing:
    """How big the worker's batches may grow; fixed for a run, handed once to each source."""

    max_ledgers: int = MAX_BATCH_LEDGERS
    target_events: int = TARGET_BATCH_EVENTS
    # One fetch stops at a ledger boundary once it holds this many events.
    max_events: int = 2 * TARGET_BATCH_EVENTS

    def sizer(self) -> BatchSizer:
        return BatchSizer(self.max_ledgers, self.target_events)


class BatchSource(Protocol):
    """Where the worker's batches come from. Every source yields first..target exactly as
    follow_range does (same sizes, same typed errors); leaving a range early is allowed."""

    def follow(
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]: ...

    async def close(self) -> None:
        """Give back what the source holds until it is next followed; safe at any time."""

    def terminate(self) -> None:
        """Give it back now, without waiting on anything (the service's stop deadline calls
        this from another thread); the next follow starts afresh."""


class InProcessSource:
    """A BatchSource fetching in this process, on this event loop."""

    def __init__(self, fetcher: RangeFetcher, sizing: BatchSizing) -> None:
        self.fetcher = fetcher
        self.max_events = sizing.max_events
        # Kept from range to range: the density seen last sizes the next range's first batch.
        self.sizer = sizing.sizer()

    def follow(
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        return follow_range(self.fetcher, self.sizer, first, target, previous_hash, self.max_events)

    async def close(self) -> None:
        """Nothing to give back: the fetcher's client belongs to the worker."""

    def terminate(self) -> None:
        """Nothing to end: fetching runs on the caller's event loop."""
