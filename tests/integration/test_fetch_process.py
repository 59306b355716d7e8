"""FetchProcess: a child process following ledger ranges hands back exactly what the
in-process fetcher would, with the same errors and the same RPC attempts counted."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import pytest

from stellar_reconciler import fetch_process
from stellar_reconciler.errors import ChainBreakError, FetchProcessLostError, RpcTransientError
from stellar_reconciler.fetch_process import CatchUpSource, FetchConfig, FetchProcess
from stellar_reconciler.fetcher import (
    BatchSizing,
    BatchSource,
    InProcessSource,
    RangeFetcher,
)
from stellar_reconciler.models import Batch
from stellar_reconciler.rpc import RetryPolicy, StellarRpc, new_http_client
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import (
    FaultKind,
    SimNetConfig,
    SimNetwork,
    ledgers_page_covers,
    serve_in_thread,
)
from tests.integration.harness import (
    network_event_ids,
    running_service,
    settings_for,
    stored_event_ids,
    wait_for,
)

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.005, max_backoff=0.02)
FIRST = 7000
SIZING = BatchSizing(max_ledgers=1000, target_events=400, max_events=800)


class Attempts:
    """An RpcObserver keeping every attempt and retry, in order."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.retries: list[str] = []

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.attempts.append((method, outcome))

    def rpc_retry(self, method: str) -> None:
        self.retries.append(method)


@pytest.fixture
def net() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=21, first_ledger=FIRST, prebuilt_ledgers=300, events_per_ledger=12)
    )


@pytest.fixture
def url(net: SimNetwork) -> Iterator[str]:
    with serve_in_thread(net) as served:
        yield served


@pytest.fixture
def observed() -> Attempts:
    return Attempts()


@pytest.fixture
async def process(url: str, observed: Attempts) -> AsyncIterator[FetchProcess]:
    config = FetchConfig(
        rpc_url=url, retry=FAST, timeout_secs=5, user_agent="test", filter_sets=[[]]
    )
    fetching = FetchProcess(config, SIZING, observed)
    yield fetching
    await fetching.close()


async def in_process(url: str, first: int, target: int) -> tuple[list[Batch], Attempts, Any]:
    """What the in-process source yields, its attempts, and the error it ended with."""
    observed = Attempts()
    client = new_http_client(5, "test")
    fetcher = RangeFetcher(StellarRpc(client, url, FAST, observer=observed), [[]])
    source: BatchSource = InProcessSource(fetcher, SIZING)
    found: list[Batch] = []
    try:
        async for batch in source.follow(first, target, None):
            found.append(batch)
    except (RpcTransientError, ChainBreakError) as exc:
        return found, observed, exc
    finally:
        await client.aclose()
    return found, observed, None


async def child(
    process: FetchProcess, first: int, target: int
) -> tuple[list[Batch], BaseException | None]:
    found: list[Batch] = []
    source: BatchSource = process
    batches: AsyncGenerator[Batch, None] = source.follow(first, target, None)
    try:
        async for batch in batches:
            found.append(batch)
    except (RpcTransientError, ChainBreakError) as exc:
        return found, exc
    return found, None


def catch_up_child(service: Service) -> FetchProcess | None:
    """The child behind the service's worker, while the worker has not given it up."""
    source = service.worker.source
    assert isinstance(source, CatchUpSource)
    return source.child


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that was reaped is gone; one not yet reaped is a zombie.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_child_yields_the_batches_and_attempts_of_the_in_process_fetcher(
    url: str, process: FetchProcess, observed: Attempts
) -> None:
    """Same batches (events decoded, ledgers chained) and the same RPC attempts, replayed."""
    expected, expected_attempts, error = await in_process(url, FIRST, FIRST + 299)
    assert error is None and len(expected) > 3
    found, error = await child(process, FIRST, FIRST + 299)
    assert error is None
    assert found == expected
    # Headers and events are fetched concurrently, so only the order may differ.
    assert sorted(observed.attempts) == sorted(expected_attempts.attempts)
    assert {method for method, _ in observed.attempts} == {"getEvents", "getLedgers"}


async def test_failing_range_shrinks_then_raises_the_typed_error(
    net: SimNetwork, url: str, process: FetchProcess, observed: Attempts
) -> None:
    """A ledger that keeps failing: the ledgers before it arrive, then RpcTransientError."""
    net.faults.add(
        FaultKind.HTTP_500, method="getLedgers", when=ledgers_page_covers(FIRST + 150), times=None
    )
    expected, expected_attempts, expected_error = await in_process(url, FIRST, FIRST + 299)
    found, error = await child(process, FIRST, FIRST + 299)
    assert isinstance(error, RpcTransientError) and isinstance(expected_error, RpcTransientError)
    assert (error.method, str(error)) == (expected_error.method, str(expected_error))
    assert found == expected and found[-1].last_ledger == FIRST + 149
    assert observed.retries and observed.retries == expected_attempts.retries
    assert ("getLedgers", "transient") in observed.attempts
    assert sorted(observed.attempts) == sorted(expected_attempts.attempts)


async def test_chain_break_arrives_with_both_hashes_and_its_valid_prefix(
    net: SimNetwork, process: FetchProcess
) -> None:
    """A broken hash chain comes back as ChainBreakError, carrying the part that chains."""
    net.break_chain_at(FIRST + 100)
    found, error = await child(process, FIRST, FIRST + 299)
    assert isinstance(error, ChainBreakError)
    assert error.sequence == FIRST + 100 and error.expected != error.found
    assert error.expected == net.ledger_hash(FIRST + 99)
    prefix = error.valid_prefix
    last_good = found[-1].last_ledger if found else FIRST - 1
    assert prefix is None or (prefix.first_ledger, prefix.last_ledger) == (
        last_good + 1,
        FIRST + 99,
    )


async def test_a_killed_child_is_reported_and_replaced(process: FetchProcess) -> None:
    """SIGKILL mid-range: FetchProcessLostError (transient); the next call starts afresh."""
    batches = process.follow(FIRST, FIRST + 299, None)
    first = await anext(batches)
    assert first.first_ledger == FIRST
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(FetchProcessLostError, match="fetch process ended"):
        async for _ in batches:
            pass
    found, error = await child(process, FIRST, FIRST + 299)
    assert error is None and found[-1].last_ledger == FIRST + 299
    assert process.pid not in (None, pid)


async def test_leaving_early_stops_the_child_and_close_is_idempotent(
    process: FetchProcess,
) -> None:
    """A caller that stops reading ends the child (its batches would be read as the next
    call's); close() afterwards, twice, is harmless."""
    batches = process.follow(FIRST, FIRST + 299, None)
    await anext(batches)
    pid = process.pid
    assert pid is not None and alive(pid)
    await batches.aclose()
    assert process.pid is None and not alive(pid)
    await process.close()
    await process.close()


async def test_close_waits_for_the_child_off_the_event_loop(process: FetchProcess) -> None:
    """close() asks a child to leave and waits for it in a thread: a child frozen when asked
    is let go by this same event loop while close() waits, and then leaves on its own (exit
    code 0) rather than being killed at the end of the grace period."""
    found, error = await child(process, FIRST, FIRST + 20)
    assert error is None and found
    popen = process._process  # read only: the exit code is not otherwise kept
    assert popen is not None
    os.kill(popen.pid, signal.SIGSTOP)
    closing = asyncio.create_task(process.close())
    # One turn of the loop: close() sends its request and starts waiting. A close() that
    # blocked the loop would finish here, after killing the frozen child.
    await asyncio.sleep(0)
    os.kill(popen.pid, signal.SIGCONT)
    await closing
    assert popen.returncode == 0
    assert process.pid is None and not alive(popen.pid)


async def test_service_catches_up_through_the_fetch_process(database_url: str) -> None:
    """With a backlog over CATCH_UP_PROCESS_LEDGERS, every event arrives once, RPC calls are
    counted in the service's metrics, and the child is given back once caught up."""
    net = SimNetwork(
        SimNetConfig(seed=22, first_ledger=9000, prebuilt_ledgers=600, events_per_ledger=10)
    )
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, catch_up_process_ledgers=100)
        async with running_service(settings) as (service, _):
            started = await wait_for(
                lambda: getattr(catch_up_child(service), "pid", None),
                what="the fetch process",
            )
            await wait_for(
                lambda: service.store.checkpoint().ledger == net.latest_ledger, what="catch-up"
            )
            assert stored_event_ids(database_url) == network_event_ids(net, 9000, 9599)
            events_calls = service.metrics.registry.get_sample_value(
                "reconciler_rpc_requests_total", {"method": "getEvents", "outcome": "ok"}
            )
            assert events_calls is not None and events_calls >= 1
            net.close_ledger()
            await wait_for(
                lambda: service.store.checkpoint().ledger == net.latest_ledger, what="following"
            )
            child = catch_up_child(service)
            assert child is not None
            assert child.pid is None and not alive(started)


async def test_a_child_that_cannot_run_is_given_up_for_one_process(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children that die at once are reported (transient), and after a few the service
    catches up in its own process instead of never getting anywhere."""
    # A child that runs sys.exit(<its pipe's fd>): it ends at once, with a non-zero status.
    monkeypatch.setattr(fetch_process, "CHILD_ENTRY", ("sys", "exit"))
    net = SimNetwork(
        SimNetConfig(seed=23, first_ledger=9000, prebuilt_ledgers=300, events_per_ledger=5)
    )
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, catch_up_process_ledgers=50)
        async with running_service(settings) as (service, _):
            await wait_for(
                lambda: service.store.checkpoint().ledger == net.latest_ledger, what="catch-up"
            )
            assert catch_up_child(service) is None
            assert stored_event_ids(database_url) == network_event_ids(net, 9000, 9299)
