"""Backfill: ledgers missing from the store between two ledgers, of any age, filled from the
data lake where the RPC no longer keeps them and from the RPC where it still does.

Only what is missing is read, and only behind the checkpoint (ahead of it is the worker's):
ledgers already stored are skipped, never rewritten, so a backfill can be run again at any
time, and one that stopped half-way resumes where it stopped. Each batch is one transaction
(Store.backfill_batch); every run of missing ledgers chains by hash to the stored ledger
before it, across the lake/RPC seam, and into the stored ledger after it, or the batch that
does not chain is not written. A retention_gap whose ledgers are all stored afterwards is
resolved, saying where they came from.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.errors import BackfillRangeError, ChainBreakError
from stellar_reconciler.fetcher import BatchSizing, RangeFetcher
from stellar_reconciler.lake_source import LakeConfig, LakeSource
from stellar_reconciler.models import Batch, LedgerRecord
from stellar_reconciler.pager import build_filter_sets
from stellar_reconciler.reconcile import Range
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import BatchHook, Store

log = structlog.get_logger("stellar_reconciler.backfill")

# Called after every batch with (ledgers done, ledgers to do).
Progress = Callable[[int, int], None]


@dataclass
class BackfillReport:
    """What one backfill found missing and wrote, by source."""

    first_ledger: int
    last_ledger: int
    missing: list[Range] = field(default_factory=list)
    from_lake: list[Range] = field(default_factory=list)
    from_rpc: list[Range] = field(default_factory=list)
    ledgers_written: int = 0
    events_written: int = 0
    # Batches found stored by the time they were to be written (a concurrent fill).
    ledgers_skipped: int = 0
    retention_gaps_resolved: list[Range] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "first_ledger": self.first_ledger,
            "last_ledger": self.last_ledger,
            "missing": [list(r) for r in self.missing],
            "from_lake": [list(r) for r in self.from_lake],
            "from_rpc": [list(r) for r in self.from_rpc],
            "ledgers_written": self.ledgers_written,
            "events_written": self.events_written,
            "ledgers_skipped": self.ledgers_skipped,
            "retention_gaps_resolved": [list(r) for r in self.retention_gaps_resolved],
        }


class Backfill:
    def __init__(
        self,
        store: Store,
        rpc: StellarRpc,
        lake: LakeConfig | None,
        filter_sets: list[list[dict[str, Any]]],
        sizing: BatchSizing,
    ) -> None:
        self.store = store
        self.rpc = rpc
        self.lake_config = lake
        self.filter_sets = filter_sets
        self.sizing = sizing
        self.lake: LakeSource | None = None

    @classmethod
    def for_settings(cls, store: Store, rpc: StellarRpc, settings: Settings) -> Backfill:
        """Filters, batch sizes and the lake as the worker has them."""
        filter_sets = build_filter_sets(settings.contract_ids, settings.event_topics)
        sizing = BatchSizing(settings.batch_max_ledgers)
        return cls(store, rpc, LakeConfig.from_settings(settings), filter_sets, sizing)

    async def run(
        self,
        first: int,
        last: int,
        progress: Progress | None = None,
        hooks: Sequence[BatchHook] = (),
    ) -> BackfillReport:
        """Fill every missing ledger of first..last; see the module's docstring. Refuses an
        RPC (and so a lake) of another network than the stored data's."""
        if first > last:
            raise BackfillRangeError(f"--from {first} is after --to {last}")
        await self.open_sources()
        await self.check_behind_checkpoint(last)
        report = BackfillReport(first, last)
        report.missing = await asyncio.to_thread(self.store.gaps.missing, first, last)
        plan = await self.plan(report.missing)
        total = sum(b - a + 1 for a, b in report.missing)
        done = 0
        if progress is not None:
            progress(done, total)
        for (run_first, run_last), (lake_part, rpc_part) in zip(report.missing, plan, strict=True):
            async for batch in self.batches(run_first, run_last, lake_part, rpc_part):
                written = await asyncio.to_thread(self.store.backfill_batch, batch, hooks)
                if written:
                    report.ledgers_written += len(batch.ledgers)
                    report.events_written += len(batch.events)
                else:
                    report.ledgers_skipped += len(batch.ledgers)
                done += len(batch.ledgers)
                if progress is not None:
                    progress(done, total)
            if lake_part is not None:
                report.from_lake.append(lake_part)
            if rpc_part is not None:
                report.from_rpc.append(rpc_part)
            log.info("backfill_run_done", first=run_first, last=run_last)
        report.retention_gaps_resolved = await asyncio.to_thread(
            self.store.gaps.resolve_filled, "a backfill from the data lake and the RPC"
        )
        return report

    async def open_sources(self) -> None:
        """Refuse an RPC (and so a lake) of another network than the stored data's; open the
        lake, once."""
        network = await self.rpc.get_network()
        await asyncio.to_thread(
            self.store.network.check, network.passphrase, redact_url(self.rpc.url)
        )
        if self.lake_config is not None and self.lake is None:
            lake = self.lake_config.open(network.passphrase)
            self.lake = LakeSource(lake, self.lake_config.selector, self.sizing)

    async def check_behind_checkpoint(self, last: int) -> None:
        """BackfillRangeError unless `last` is behind the worker's checkpoint."""
        checkpoint = (await asyncio.to_thread(self.store.checkpoint)).ledger
        if checkpoint is None or last > checkpoint:
            raise BackfillRangeError(
                f"ledgers up to {last} cannot be backfilled: the worker has indexed up to "
                f"{checkpoint if checkpoint is not None else 'nothing yet'}, and what comes "
                "after that is its own to write. Give --to at most the checkpoint (reconciler "
                "status shows it), or start the service first"
            )

    async def plan(self, missing: list[Range]) -> list[tuple[Range | None, Range | None]]:
        """Each missing run split into its lake part (older than the RPC keeps) and its RPC
        part; BackfillRangeError when a lake part is needed and no lake is configured."""
        if not missing:
            return []
        oldest = (await self.rpc.get_health()).oldest_ledger
        plan = [_split(run, oldest) for run in missing]
        too_old = [lake for lake, _ in plan if lake is not None]
        if too_old and self.lake is None:
            shown = ", ".join(f"{a}-{b}" for a, b in too_old)
            raise BackfillRangeError(
                f"ledgers {shown} are older than the RPC keeps (its oldest is {oldest}); set "
                "LAKE_URL to a SEP-54 data lake of the same network to backfill them"
            )
        return plan

    async def batches(
        self, first: int, last: int, lake_part: Range | None, rpc_part: Range | None
    ) -> AsyncIterator[Batch]:
        """first..last from the lake, then the RPC, chained from the stored ledger before
        `first` into the stored ledger after `last`."""
        before = await asyncio.to_thread(self.store.ledger, first - 1)
        after = await asyncio.to_thread(self.store.ledger, last + 1)
        previous_hash = before.hash if before else None
        if lake_part is not None:
            assert self.lake is not None
            async for batch in self.lake.follow(lake_part[0], lake_part[1], previous_hash):
                previous_hash = _chained(batch, last, after)
                yield batch
        if rpc_part is not None:
            fetcher = RangeFetcher(self.rpc, self.filter_sets)
            async for batch in fetcher.batches(rpc_part[0], rpc_part[1], previous_hash):
                previous_hash = _chained(batch, last, after)
                yield batch


def _chained(batch: Batch, last: int, after: LedgerRecord | None) -> str:
    """The batch's last hash, once it is known to chain into the stored ledger after the run
    when it reaches the run's end."""
    reached = batch.ledgers[-1].hash
    if batch.last_ledger == last and after is not None and reached != after.previous_hash:
        raise ChainBreakError(last + 1, reached, after.previous_hash)
    return reached


def _split(run: Range, oldest: int) -> tuple[Range | None, Range | None]:
    """The part of a missing run the RPC no longer keeps (for the lake), and the rest."""
    first, last = run
    if last < oldest:
        return run, None
    if first >= oldest:
        return None, run
    return (first, oldest - 1), (oldest, last)
