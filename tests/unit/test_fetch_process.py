"""CatchUpSource: a long backlog through the fetch child, anything shorter in this process."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from stellar_reconciler.fetch_process import MAX_LOSSES, CatchUpSource, FetchConfig, FetchProcess
from stellar_reconciler.fetcher import BatchSizing
from stellar_reconciler.models import Batch, LedgerRecord
from stellar_reconciler.rpc import RetryPolicy

CONFIG = FetchConfig(
    rpc_url="http://127.0.0.1:9",
    retry=RetryPolicy(),
    timeout_secs=1,
    user_agent="test",
    filter_sets=[[]],
)


def one_ledger(ledger: int) -> Batch:
    """A batch of one ledger without events (the hashes do not matter here)."""
    record = LedgerRecord(ledger, "h", "h", datetime(2026, 12, 6, tzinfo=UTC), 0)
    return Batch(ledger, ledger, (record,), ())


class Observer:
    """An RpcObserver that forgets."""

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        pass

    def rpc_retry(self, method: str) -> None:
        pass


class Followed:
    """What a fake source was asked for and told."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int, str | None]] = []
        self.left: list[tuple[int, int]] = []
        self.closed = 0
        self.terminated = 0

    async def batches(
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        self.ranges.append((first, target, previous_hash))
        try:
            for ledger in range(first, target + 1):
                yield one_ledger(ledger)
        finally:
            self.left.append((first, target))


class FakeInProcess(Followed):
    """A BatchSource yielding one empty batch a ledger."""

    def follow(
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        return self.batches(first, target, previous_hash)

    async def close(self) -> None:
        self.closed += 1

    def terminate(self) -> None:
        self.terminated += 1


class FakeChild(FetchProcess):
    """A FetchProcess that starts no process: it yields one empty batch a ledger."""

    def __init__(self) -> None:
        super().__init__(CONFIG, BatchSizing(), Observer())
        self.seen = Followed()

    def follow(  # type: ignore[override]  # a plain generator stands in for the child's
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        return self.seen.batches(first, target, previous_hash)

    async def close(self) -> None:
        self.seen.closed += 1

    def terminate(self) -> None:
        self.seen.terminated += 1


async def ledgers(source: CatchUpSource, first: int, target: int) -> list[int]:
    return [batch.last_ledger async for batch in source.follow(first, target, "h")]


async def test_long_backlog_goes_to_the_child_short_one_stays_here() -> None:
    """A backlog of min_ledgers or more is followed by the child; a shorter one in this
    process, after the child is given back."""
    here, child = FakeInProcess(), FakeChild()
    source = CatchUpSource(here, child, min_ledgers=10)
    assert await ledgers(source, 1, 10) == list(range(1, 11))
    assert child.seen.ranges == [(1, 10, "h")] and here.ranges == []
    assert child.seen.closed == 0
    assert await ledgers(source, 11, 19) == list(range(11, 20))
    assert here.ranges == [(11, 19, "h")] and child.seen.closed == 1


async def test_a_child_lost_too_often_is_given_up() -> None:
    """After MAX_LOSSES children lost in a row, every range is followed in this process."""
    here, child = FakeInProcess(), FakeChild()
    child.losses = MAX_LOSSES
    source = CatchUpSource(here, child, min_ledgers=10)
    assert await ledgers(source, 1, 100) == list(range(1, 101))
    assert here.ranges == [(1, 100, "h")] and child.seen.ranges == []
    assert source.child is None


async def test_without_a_child_everything_stays_here() -> None:
    """No child (CATCH_UP_PROCESS_LEDGERS=0): every range in this process; close and
    terminate have nothing to end."""
    here = FakeInProcess()
    source = CatchUpSource(here, None, min_ledgers=0)
    assert await ledgers(source, 1, 5000) == list(range(1, 5001))
    await source.close()
    source.terminate()
    assert here.closed == 0 and here.terminated == 0


async def test_leaving_a_range_early_leaves_the_chosen_source() -> None:
    """A caller that stops reading closes the chosen source's batches too (a child's would
    otherwise be read as the next range's)."""
    child = FakeChild()
    source = CatchUpSource(FakeInProcess(), child, min_ledgers=10)
    batches = source.follow(1, 50, None)
    assert (await anext(batches)).last_ledger == 1
    await batches.aclose()
    assert child.seen.left == [(1, 50)]


async def test_close_and_terminate_reach_the_child() -> None:
    """close() gives the child back politely, terminate() at once."""
    child = FakeChild()
    source = CatchUpSource(FakeInProcess(), child, min_ledgers=10)
    await source.close()
    source.terminate()
    assert (child.seen.closed, child.seen.terminated) == (1, 1)
