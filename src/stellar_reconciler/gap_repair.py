"""Gap repair: fills ledgers missing from the store, from the RPC while it still keeps them and
from the data lake after; what neither can fill is a retention_gap discrepancy with its exact
range. Each batch written is one transaction (store.fill_gap), chained to the stored ledgers on
both sides of the gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from stellar_reconciler.backfill import Backfill
from stellar_reconciler.backfill_chunks import ChunkedBackfill
from stellar_reconciler.config import Settings
from stellar_reconciler.errors import BackfillChunksFailedError, ChainBreakError, LakeError
from stellar_reconciler.fetcher import RangeFetcher
from stellar_reconciler.models import NetworkTip
from stellar_reconciler.outage import FillBackoff
from stellar_reconciler.reconcile import Range
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import BatchHook, NewDiscrepancy, Store
from stellar_reconciler.verify_report import VerifyReport

log = structlog.get_logger("stellar_reconciler.gap_repair")


class GapRepair:
    def __init__(
        self,
        rpc: StellarRpc,
        store: Store,
        filter_sets: list[list[dict[str, Any]]],
        batch_hooks: Sequence[BatchHook],
        backfill: Backfill | None,
        settings: Settings | None,
        lake_retry_seconds: float,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.filter_sets = filter_sets
        self.batch_hooks = tuple(batch_hooks)
        self.backfill = backfill
        # With the settings, lake fills run in chunks (queued on PostgreSQL).
        self.settings = settings
        # The periodic check's tries of the lake, backing off while it fails.
        self.lake_tries = FillBackoff(lake_retry_seconds)

    async def repair(
        self,
        tip: NetworkTip,
        low: int | None = None,
        high: int | None = None,
        scheduled: bool = False,
    ) -> VerifyReport:
        """Fill gaps inside the RPC's retention window, in order, a transaction a batch; record
        the ones outside it as retention_gap discrepancies with their exact range, after
        trying the lake (the periodic check, `scheduled`, backs off while that fails)."""
        gaps = await asyncio.to_thread(self.store.gaps.find, low, high)
        report = VerifyReport(low or 0, high or 0)
        for first, last in gaps:
            if last < tip.oldest_ledger:
                lost: Range = (first, last)
            elif first < tip.oldest_ledger:
                lost = (first, tip.oldest_ledger - 1)
                first = tip.oldest_ledger
            else:
                lost = (0, -1)
            if lost[0] <= lost[1] and not await self._fill_from_lake(lost, report, scheduled):
                await asyncio.to_thread(self._record_retention_gap, lost, tip)
                report.retention_gaps.append(lost)
            if first <= last and last >= tip.oldest_ledger:
                await self._fill(first, last)
                report.gaps_filled.append((first, last))
        return report

    async def _fill_from_lake(self, lost: Range, report: VerifyReport, scheduled: bool) -> bool:
        """Fill a gap the RPC no longer keeps from the data lake, when one is configured; a
        retention_gap open for it is resolved saying so. With the settings, in chunks as
        `reconciler backfill` fills a range (on PostgreSQL jobs any backfill-worker may take,
        worked on here too; a chunk written stays written, so a fill that stops resumes),
        else batch by batch. False when it could not be."""
        if self.backfill is None or self.backfill.lake_config is None:
            return False
        if scheduled and not self.lake_tries.due(lost):
            return False
        try:
            if self.settings is not None:
                chunked = ChunkedBackfill(
                    self.settings, self.backfill, self.batch_hooks, requested_by="gap repair"
                )
                await chunked.run(lost[0], lost[1])
            else:
                await self.backfill.run(lost[0], lost[1], hooks=self.batch_hooks)
        except (LakeError, BackfillChunksFailedError) as exc:
            retry = self.lake_tries.failed(lost)
            log.warning(
                "gap_not_filled_from_lake",
                first=lost[0],
                last=lost[1],
                error=str(exc),
                next_try_seconds=round(retry),
            )
            return False
        self.lake_tries.filled(lost)
        report.gaps_filled.append(lost)
        return True

    async def _fill(self, first: int, last: int) -> None:
        """Fetch and write first..last batch by batch, each batch one transaction: memory
        stays that of one batch however long the gap. Every batch chains to the stored ledger
        before the gap; the last must also chain to the one after it, or nothing of it is
        written (the batches before it are true history either way)."""
        before = await asyncio.to_thread(self.store.ledger, first - 1)
        after = await asyncio.to_thread(self.store.ledger, last + 1)
        fetcher = RangeFetcher(self.rpc, self.filter_sets)
        events = 0
        async for batch in fetcher.batches(first, last, before.hash if before else None):
            reached = batch.ledgers[-1].hash
            if batch.last_ledger == last and after is not None and reached != after.previous_hash:
                raise ChainBreakError(last + 1, reached, after.previous_hash)
            events += len(batch.events)
            await asyncio.to_thread(
                self.store.fill_gap, (first, last), batch, self.batch_hooks, events
            )
        log.info("gap_filled", first=first, last=last, events=events)

    def _record_retention_gap(self, lost: Range, tip: NetworkTip) -> None:
        first, last = lost
        self.store.discrepancies.open(
            NewDiscrepancy(
                kind="retention_gap",
                key=f"retention_gap:{first}-{last}",
                message=(
                    f"ledgers {first}-{last} are missing and older than the RPC keeps (oldest: "
                    f"{tip.oldest_ledger}); they cannot be filled from this RPC. Fill them from "
                    "an archive RPC, or accept the loss by resolving this discrepancy"
                ),
                first_ledger=first,
                last_ledger=last,
                expected={"ledgers": last - first + 1},
                found={"oldest_available_ledger": tip.oldest_ledger},
            )
        )
