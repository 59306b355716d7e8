"""Worker: follows the ledger from the checkpoint to the network's tip, batch by batch.

While one batch is written, the next is already being fetched and decoded (a queue of two
sits between them), so catch-up runs at the pace of the slower side instead of their sum.
Each batch is committed whole (see Store.commit_batch); after any failure the worker
starts again from the checkpoint, the only state that survives.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from stellar_reconciler import outage
from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.errors import (
    ChainBreakError,
    DatabaseUnavailableError,
    ReconcilerError,
    RpcError,
    RpcProtocolError,
    RpcRequestError,
)
from stellar_reconciler.fetcher import BatchSizing, BatchSource, first_error
from stellar_reconciler.lake_source import LakeConfig
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.models import Batch, BlockKind, NetworkInfo, NetworkTip
from stellar_reconciler.outcomes import OutcomeChecker
from stellar_reconciler.pager import build_filter_sets
from stellar_reconciler.plan import Blocked, Idle, Proceed, Rebase, Skip, Start, plan_next
from stellar_reconciler.retention import RetentionGaps
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import BatchHook, NewDiscrepancy, Store

log = structlog.get_logger("stellar_reconciler.worker")

# On stop, a batch already handed to the database gets this long to commit before the worker
# returns without it (the service's stop deadline then ends the process; see stopping.py).
COMMIT_GRACE_SECS = 5.0


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    poll_interval: float
    start_ledger: str
    filter_sets: list[list[dict[str, Any]]]
    fingerprint: str
    # How big a batch may grow, whichever source it comes from.
    sizing: BatchSizing = field(default_factory=BatchSizing)
    backoff: outage.PollBackoff | None = None
    failure_summary_secs: float = 60.0
    # Where ledgers older than the RPC keeps are read from (None: no lake, a gap blocks).
    lake: LakeConfig | None = None
    tx_outcome_checks: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        filter_sets = build_filter_sets(settings.contract_ids, settings.event_topics)
        identity = json.dumps(
            {"contracts": sorted(settings.contract_ids), "topics": settings.event_topics},
            sort_keys=True,
        )
        return cls(
            poll_interval=settings.poll_interval_secs,
            start_ledger=settings.start_ledger,
            filter_sets=filter_sets,
            fingerprint=hashlib.sha256(identity.encode()).hexdigest()[:32],
            sizing=BatchSizing(max_ledgers=settings.batch_max_ledgers),
            backoff=outage.PollBackoff.from_settings(settings),
            failure_summary_secs=settings.failure_summary_secs,
            lake=LakeConfig.from_settings(settings),
            tx_outcome_checks=settings.tx_outcome_checks_per_poll,
        )


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True when the stop event fired."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        return stop.is_set()
    return True


class Worker:
    """The follower loop. Owns nothing that must survive it: the checkpoint lives in the store.
    Its batches come from `source` (the service gives it fetch_process.CatchUpSource), or,
    for ledgers older than the RPC keeps, from the lake."""

    def __init__(
        self,
        rpc: StellarRpc,
        store: Store,
        status: ServiceStatus,
        metrics: Metrics,
        options: WorkerOptions,
        source: BatchSource,
        batch_hooks: Sequence[BatchHook] = (),
    ) -> None:
        self.batch_hooks = tuple(batch_hooks)
        # Set once run() starts: a worker runs once, and a new one replaces it afterwards.
        self.ran = False
        self.rpc = rpc
        self.store = store
        self.status = status
        self.metrics = metrics
        self.options = options
        self.source = source
        self.outcomes = OutcomeChecker(rpc, store.outcomes, options.tx_outcome_checks)
        self.retention = RetentionGaps(store, status, metrics, options.lake, options.sizing)
        backoff = options.backoff or outage.PollBackoff(options.poll_interval, 60.0, 300.0)
        self.outage = outage.Outage(backoff, options.failure_summary_secs)
        # The batch commit running in a thread, if any: waited for (briefly) on stop.
        self._commit: asyncio.Future[None] | None = None
        # True while a commit runs in its thread (the future above ends with the event loop).
        self._in_commit = False
        self._checkpoint: int | None = None
        self._last_hash: str | None = None
        self._start = Start.OLDEST_WHILE_EMPTY if options.start_ledger == "oldest" else Start.FIXED

    # --- the loop ------------------------------------------------------------------------

    @property
    def committing(self) -> bool:
        """A batch is in the database's hands right now."""
        return self._in_commit

    def kill_fetch_process(self) -> None:
        """End the catch-up child at once, busy or not (the service's stop deadline)."""
        self.source.terminate()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and catch up until `stop` is set, which cancels the poll in flight at once.

        A failed poll (RPC or database) is retried after a growing wait, however it failed:
        health says why meanwhile. Only a fault a retry cannot fix (a broken hash chain,
        another writer, a bug) returns early, leaving health degraded with what to do."""
        self.status.worker_started()
        self.ran = True
        try:
            while not stop.is_set():
                delay = self.options.poll_interval
                try:
                    if await self._cycle_until(stop):
                        return
                except (RpcError, DatabaseUnavailableError) as exc:
                    # An out-of-range answer means the window slid or a node lags; the next
                    # poll's getHealth tells which, and a real retention gap is reported then.
                    # A rejected request or a garbled answer may come from one bad node
                    # behind a load balancer: also worth another try, just less often.
                    delay = self._failed(exc)
                except ReconcilerError as exc:
                    await self._halt(exc)
                    return
                except Exception as exc:
                    # A bug must not take the HTTP server down with it: /health turns 503 with
                    # the error, the traceback goes to the log, and the loop stops here.
                    log.exception("worker_crashed", checkpoint=self._checkpoint)
                    await self._halt(ReconcilerError(f"{type(exc).__name__}: {exc}"))
                    return
                else:
                    self.outage.recovered()
                if not stop.is_set():
                    await sleep_or_stop(stop, delay)
        finally:
            self.status.worker_stopped()
            await self.source.close()

    async def _cycle_until(self, stop: asyncio.Event) -> bool:
        """One poll, cancelled as soon as `stop` fires (a hung RPC call included); True when
        it was stopped. A batch already handed to the database still commits or rolls back
        whole: the commit runs shielded, and gets COMMIT_GRACE_SECS to finish."""
        cycle = asyncio.create_task(self._cycle(stop))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({cycle, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not stop.is_set() or cycle.done():
            await cycle
            return stop.is_set()
        cycle.cancel()
        await asyncio.wait({cycle})
        if not cycle.cancelled() and cycle.exception() is not None:
            log.info("poll_ended_by_stop", error=str(cycle.exception()))
        commit = self._commit
        if commit is not None and not commit.done():
            await asyncio.wait({commit}, timeout=COMMIT_GRACE_SECS)
            if not commit.done():
                log.error(
                    "commit_unfinished_at_stop",
                    checkpoint=self._checkpoint,
                    waited_secs=COMMIT_GRACE_SECS,
                    hint="the database did not answer; the batch commits whole or not at all",
                )
        return True

    async def _cycle(self, stop: asyncio.Event) -> None:
        """One poll: read the tip, then do what plan_next decides (see plan.py)."""
        if self.status.paused:
            return
        tip = await self.rpc.get_health()
        self.status.observe_tip(tip)
        if self.status.network is None:
            self.status.record_network(await self._network())
        checkpoint = await self._current_checkpoint(tip)
        consent = await asyncio.to_thread(self.store.consents.pending)
        # A rebase or a skip changes an input of the plan for good (the checkpoint, the start
        # rule or the consent) and plans again; every other step ends the poll.
        while True:
            plan = plan_next(checkpoint, tip.latest_ledger, tip.oldest_ledger, self._start, consent)
            match plan:
                case Rebase():
                    if await asyncio.to_thread(
                        self.store.rebase_empty_stream, checkpoint, plan.checkpoint
                    ):
                        checkpoint = self._checkpoint = plan.checkpoint
                    else:
                        self._start = Start.FIXED
                case Skip():
                    consent = None
                    checkpoint = await self._skip(plan, checkpoint)
                case Blocked():
                    follow = functools.partial(self._follow, stop=stop)
                    await self.retention.meet(plan, self.status.network, follow)
                    return
                case Idle():
                    self.status.unblock(BlockKind.RETENTION_GAP)
                    # First, so a poll's success is what ends it (health then outage reset).
                    await self.outcomes.check()
                    self.status.record_idle_success()
                    return
                case Proceed():
                    self.status.unblock(BlockKind.RETENTION_GAP)
                    await self.outcomes.check()
                    await self._catch_up(tip, stop)
                    return

    async def _current_checkpoint(self, tip: NetworkTip) -> int:
        if self._checkpoint is None:
            start = self._start_ledger(tip)
            self._checkpoint = await asyncio.to_thread(
                self.store.ensure_stream, start, self.options.fingerprint
            )
            self.status.record_progress(self._checkpoint)
            log.info("stream_ready", checkpoint=self._checkpoint, start_ledger=start)
            return self._checkpoint
        # The checkpoint may move outside this loop; re-read it.
        stored = (await asyncio.to_thread(self.store.checkpoint)).ledger
        if stored is not None and stored != self._checkpoint:
            return self._moved_to(stored)
        return self._checkpoint

    async def _skip(self, plan: Skip, checkpoint: int) -> int:
        """Carry out a consent; the checkpoint after it (unchanged when it was revoked or used
        in the meantime)."""
        carried_out = await asyncio.to_thread(
            self.store.consents.carry_out, plan.first, plan.last, plan.consent.id
        )
        if carried_out is None:
            return checkpoint
        log.warning(
            "gap_acknowledged",
            first=plan.first,
            last=plan.last,
            by=plan.consent.requested_by,
            consent=plan.consent.id,
        )
        return self._moved_to(plan.last)

    def _moved_to(self, checkpoint: int) -> int:
        self._checkpoint, self._last_hash = checkpoint, None
        self.status.moved_checkpoint(checkpoint)
        return checkpoint

    async def _network(self) -> NetworkInfo:
        """The network's passphrase and protocol: shown to operators, never needed to index,
        so a node that does not answer getNetwork does not stop the worker."""
        try:
            info = await self.rpc.get_network()
        except (RpcRequestError, RpcProtocolError) as exc:
            log.warning("network_unknown", error=str(exc))
            # A network passphrase is public, not a secret.
            return NetworkInfo(passphrase="unknown (getNetwork failed)", protocol_version=0)  # noqa: S106
        # Start-up records it when the RPC answers then; otherwise here, before the first batch
        # (NetworkMismatchError halts the worker: the database holds another network's data).
        await asyncio.to_thread(
            self.store.network.record, info.passphrase, redact_url(self.rpc.url)
        )
        return info

    def _start_ledger(self, tip: NetworkTip) -> int:
        choice = self.options.start_ledger
        if choice == "oldest":
            return tip.oldest_ledger
        if choice == "latest":
            return tip.latest_ledger
        return int(choice)

    # --- catching up ---------------------------------------------------------------------

    async def _catch_up(self, tip: NetworkTip, stop: asyncio.Event) -> None:
        assert self._checkpoint is not None
        first, target = self._checkpoint + 1, tip.latest_ledger
        await self._follow(self.source, first, target, stop)

    async def _follow(
        self, source: BatchSource, first: int, target: int, stop: asyncio.Event
    ) -> None:
        """Commit first..target (first is checkpoint + 1) from `source`, batch by batch."""
        if self._last_hash is None:
            stored = await asyncio.to_thread(self.store.ledger, first - 1)
            self._last_hash = stored.hash if stored else None
        batches = source.follow(first, target, self._last_hash)
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        fetch_error: list[BaseException] = []
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._produce(batches, queue, stop, fetch_error))
                group.create_task(self._consume(queue))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        finally:
            await batches.aclose()
        if fetch_error:
            # Raised only now, after every batch fetched before the failure was committed.
            raise fetch_error[0]

    async def _produce(
        self,
        batches: AsyncIterator[Batch],
        queue: asyncio.Queue[Batch | None],
        stop: asyncio.Event,
        fetch_error: list[BaseException],
    ) -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
                if stop.is_set() or self.status.paused:
                    break
        except ChainBreakError as exc:
            if exc.valid_prefix is not None:
                # Commit what chains to the stored history, then halt at the break.
                await queue.put(exc.valid_prefix)
            fetch_error.append(exc)
        except ReconcilerError as exc:
            fetch_error.append(exc)
        # The consumer must learn that nothing more is coming, failure or not.
        await queue.put(None)

    async def _consume(self, queue: asyncio.Queue[Batch | None]) -> None:
        while (batch := await queue.get()) is not None:
            started = time.perf_counter()
            # Shielded: once a batch is handed to the database it commits or rolls back whole,
            # even when shutdown cancels the loop around it.
            self._commit = asyncio.ensure_future(asyncio.to_thread(self._commit_batch, batch))
            await asyncio.shield(self._commit)
            self._committed(batch, time.perf_counter() - started)

    def _commit_batch(self, batch: Batch) -> None:
        """Runs in a thread: commit one batch, whole or not at all."""
        self._in_commit = True
        try:
            self.store.commit_batch(batch, self.batch_hooks)
        finally:
            self._in_commit = False

    def _committed(self, batch: Batch, duration: float) -> None:
        self._checkpoint = batch.last_ledger
        self._last_hash = batch.ledgers[-1].hash
        ledgers = len(batch.ledgers)
        self.metrics.processed_ledgers.inc(ledgers)
        self.metrics.events_indexed.inc(len(batch.events))
        self.metrics.batch_duration.observe(duration)
        self.metrics.batch_ledgers.observe(ledgers)
        self.metrics.checkpoint_ledger.set(batch.last_ledger)
        if line := self.status.record_batch(batch.last_ledger, ledgers, len(batch.events)):
            log.info("catch_up_progress", **line)
        log.info(
            "batch_committed",
            first=batch.first_ledger,
            last=batch.last_ledger,
            ledgers=ledgers,
            events=len(batch.events),
            duration_ms=round(duration * 1000, 1),
        )

    # --- failures ------------------------------------------------------------------------

    def _failed(self, exc: ReconcilerError) -> float:
        """Record a failed poll; the seconds to wait before the next one."""
        if isinstance(exc, DatabaseUnavailableError):
            kind = "database"
        elif isinstance(exc, RpcError) and not exc.retryable:
            kind = "rpc_fault"
        else:
            kind = "rpc_transient"
        self.metrics.processing_errors.labels(kind=kind).inc()
        self.status.record_poll_failure(str(exc), outage.dependency_of(exc))
        return self.outage.failed(exc, self._checkpoint)

    async def _halt(self, exc: ReconcilerError) -> None:
        if isinstance(exc, ChainBreakError):
            await asyncio.to_thread(self._record_chain_break, exc)
        kind = type(exc).__name__
        self.metrics.processing_errors.labels(kind=kind).inc()
        reason = f"worker stopped: {exc}"
        self.status.block(reason, {"error": kind}, BlockKind.HALTED)
        log.error("worker_halted", error=str(exc), kind=kind, checkpoint=self._checkpoint)

    def _record_chain_break(self, exc: ChainBreakError) -> None:
        try:
            self.store.discrepancies.open(
                NewDiscrepancy(
                    kind="chain_break",
                    key=f"chain_break:{exc.sequence}",
                    message=str(exc),
                    first_ledger=exc.sequence,
                    last_ledger=exc.sequence,
                    expected={"previous_hash": exc.expected, "ledger": exc.sequence - 1},
                    found={"previous_hash": exc.found, "ledger": exc.sequence},
                )
            )
        except DatabaseUnavailableError:
            # The halt itself (health 503 with both hashes) still stands; the log has it too.
            log.exception("chain_break_not_recorded", ledger=exc.sequence)
