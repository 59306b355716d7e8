"""A backfill cut into chunks: on PostgreSQL, jobs of a queue that `reconciler backfill-worker`
processes share (any number, a SIGKILLed one's chunk retried); on SQLite, run in order by the
command itself. Either way the store ends equal to the network, each chunk chained to its
neighbours by hash, and a chunk that does not chain writes nothing and is named."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select, update

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import backfill_chunks, ledgers
from tests.conftest import PostgresTemplate
from tests.integration.harness import network_ledgers, stored_ledgers, wait_for_sync
from tests.integration.test_backfill import indexed_from
from tests.integration.test_cli import RECONCILER
from tests.integration.test_retention import expected_events, lake_for, stored_events

OWN_SETTINGS = ("DATABASE_URL", "STELLAR_RPC_URL", "CONTRACT_IDS", "EVENT_TOPICS", "LAKE_URL")
FIRST, LAST = 1024, 2823
# Indexed by the service from here; the backfills fill FIRST..INDEXED_FROM - 1.
INDEXED_FROM = 2700


def network(seed: int) -> SimNetwork:
    """Ledgers 1024-2823; the RPC keeps the last 1,000 (1824-2823), the lake has them all."""
    return SimNetwork(
        SimNetConfig(
            seed=seed,
            first_ledger=FIRST,
            prebuilt_ledgers=LAST - FIRST + 1,
            retention_window=1000,
            events_per_ledger=3,
        )
    )


def environment(database_url: str, rpc_url: str, lake_url: str, chunk: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}
    env.update(
        DATABASE_URL=database_url,
        STELLAR_RPC_URL=rpc_url,
        LAKE_URL=lake_url,
        RPC_MAX_ATTEMPTS="2",
        BATCH_MAX_LEDGERS="25",
        LOG_FORMAT="json",
        LOG_LEVEL="warning",
        BACKFILL_CHUNK_LEDGERS=str(chunk),
        BACKFILL_STALLED_SECS="2",
    )
    return env


@contextmanager
def workers(env: dict[str, str], count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` backfill-worker processes, registered with the queue before this yields."""
    started = [
        subprocess.Popen(
            [str(RECONCILER), "backfill-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        wait_for_sync(lambda: registered(env["DATABASE_URL"]) >= count, 60, what=f"{count} workers")
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def registered(database_url: str) -> int:
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM procrastinate_workers").scalar())
    finally:
        store.close()


def queue_backfill(env: dict[str, str], first: int, last: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(RECONCILER), "backfill", "--queue-only", "--from", str(first), "--to", str(last)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_command(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    return " ".join(out.split())


def chunk_rows(database_url: str) -> list[tuple[int, int, str, int, str | None]]:
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            query = select(
                backfill_chunks.c.first_ledger,
                backfill_chunks.c.last_ledger,
                backfill_chunks.c.state,
                backfill_chunks.c.attempts,
                backfill_chunks.c.worker,
            ).order_by(backfill_chunks.c.first_ledger)
            return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]
    finally:
        store.close()


def assert_equals_network(database_url: str, net: SimNetwork) -> None:
    stored = stored_events(database_url)
    truth = expected_events(net, FIRST, LAST)
    assert stored_ledgers(database_url) == network_ledgers(net, FIRST, LAST)
    assert stored == truth
    # Keys of a dict cannot repeat: count the rows too, so a duplicate would show.
    store = Store.open(database_url)
    try:
        assert store.event_count() == len(truth)
    finally:
        store.close()


async def prepared(database_url: str, net: SimNetwork, url: str) -> None:
    await indexed_from(database_url, net, url, INDEXED_FROM)


@pytest.mark.postgres
async def test_two_worker_processes_fill_several_chunks_exactly_once(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    """1024-2699 in chunks of 300 (6 chunks: 824 ledgers from the lake, the rest from the RPC)
    queued with --queue-only and written by two backfill-worker processes, both of which take
    chunks: every ledger and event of the network stored exactly once, every chunk done once,
    and the run verified contiguous through 2699."""
    database_url = postgres_template.clone()
    net = network(301)
    _, lake_url = lake_for(net, tmp_path / "lake", FIRST, LAST)
    with serve_in_thread(net) as url:
        await prepared(database_url, net, url)
        env = environment(database_url, url, lake_url, 300)
        with workers(env, 2):
            report = finished(queue_backfill(env, FIRST, INDEXED_FROM - 1))
    assert "chunks │ 6" in report and "verified contiguous through │ 2,699" in report
    assert "from lake │ 1024-1823" in report and "from rpc │ 1824-2699" in report
    rows = chunk_rows(database_url)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (a, min(a + 299, 2699), "done", 1) for a in range(FIRST, INDEXED_FROM, 300)
    ]
    assert len({r[4] for r in rows}) == 2, rows
    assert_equals_network(database_url, net)


@pytest.mark.postgres
async def test_a_worker_killed_mid_chunk_loses_nothing_its_chunk_is_retried(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    """Two workers; one is SIGKILLed while its chunk is running (not committed). Once its
    heartbeat is 2 s old the other worker runs that chunk again: the run finishes, the chunk
    is done on its second attempt, and the store equals the network exactly."""
    database_url = postgres_template.clone()
    net = network(302)
    _, lake_url = lake_for(net, tmp_path / "lake", FIRST, LAST)
    with serve_in_thread(net) as url:
        await prepared(database_url, net, url)
        env = environment(database_url, url, lake_url, 300)
        with workers(env, 2) as (victim, _):
            backfill = queue_backfill(env, FIRST, INDEXED_FROM - 1)

            def victim_chunk() -> tuple[int, int] | None:
                for first, last, state, _, worker in chunk_rows(database_url):
                    if state == "running" and (worker or "").endswith(f":{victim.pid}"):
                        return first, last
                return None

            killed = wait_for_sync(victim_chunk, 120, what="a chunk taken by the victim")
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            report = finished(backfill)
    assert "verified contiguous through │ 2,699" in report
    rows = {(r[0], r[1]): r for r in chunk_rows(database_url)}
    assert rows[killed][2] == "done" and rows[killed][3] >= 2, rows[killed]
    assert not rows[killed][4].endswith(f":{victim.pid}")  # type: ignore[union-attr]
    assert_equals_network(database_url, net)


@pytest.mark.postgres
async def test_one_two_and_four_workers_store_identical_data(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    """The same range backfilled with 1, 2 and 4 backfill-worker processes into three
    databases: the three stores are identical, ledger for ledger and event for event, and
    equal to the network."""
    net = network(303)
    _, lake_url = lake_for(net, tmp_path / "lake", FIRST, LAST)
    results = []
    with serve_in_thread(net) as url:
        for count in (1, 2, 4):
            database_url = postgres_template.clone()
            await prepared(database_url, net, url)
            env = environment(database_url, url, lake_url, 250)
            with workers(env, count):
                finished(queue_backfill(env, FIRST, INDEXED_FROM - 1))
            results.append((stored_ledgers(database_url), stored_events(database_url)))
            assert_equals_network(database_url, net)
            postgres_template.drop(database_url)
    assert results[0] == results[1] == results[2]


async def test_chunks_run_in_one_process_and_the_stitch_mark_reaches_the_end(
    database_url: str, tmp_path: Path
) -> None:
    """`reconciler backfill` with no worker running, chunks of 400: on SQLite it writes every
    chunk itself in order, on PostgreSQL it works on its own queue; either way 5 chunks, the
    mark at 2699, the store equal to the network. Run again, nothing is missing."""
    net = network(304)
    _, lake_url = lake_for(net, tmp_path / "lake", FIRST, LAST)
    with serve_in_thread(net) as url:
        await prepared(database_url, net, url)
        env = environment(database_url, url, lake_url, 400)
        command = [str(RECONCILER), "backfill", "--from", str(FIRST), "--to", "2699"]
        run = run_command(command, env)
        assert run.returncode == 0, run.stderr
        report = " ".join(run.stdout.split())
        assert "chunks │ 5" in report and "verified contiguous through │ 2,699" in report
        assert_equals_network(database_url, net)
        again = run_command(command, env)
        assert again.returncode == 0, again.stderr
        assert "ledgers written │ 0" in " ".join(again.stdout.split())
    assert_equals_network(database_url, net)


async def test_a_chunk_that_does_not_chain_writes_nothing_and_is_named(
    database_url: str, tmp_path: Path
) -> None:
    """The stored ledger 2700 is made to claim another previous hash: the chunk 2600-2699,
    whose last ledger must chain into it, writes nothing, the command exits 1 naming ledger
    2700, and a chain_break discrepancy is open for it; the other chunks are written and the
    mark stops before the broken chunk."""
    net = network(305)
    _, lake_url = lake_for(net, tmp_path / "lake", FIRST, LAST)
    with serve_in_thread(net) as url:
        await prepared(database_url, net, url)
        store = Store.open(database_url)
        try:
            with store.engine.begin() as conn:
                conn.execute(
                    update(ledgers).where(ledgers.c.sequence == 2700).values(previous_hash="0" * 64)
                )
        finally:
            store.close()
        env = environment(database_url, url, lake_url, 100)
        command = [str(RECONCILER), "backfill", "--from", "2400", "--to", "2699"]
        run = run_command(command, env)
    assert run.returncode == 1, run.stderr
    assert "chunk 2600-2699" in run.stderr and "hash chain broken at ledger 2700" in run.stderr
    stored = [row[0] for row in stored_ledgers(database_url)]
    assert stored == [*range(2400, 2600), *range(2700, LAST + 1)]
    store = Store.open(database_url)
    try:
        open_breaks = store.discrepancies.listing("chain_break", True, 10, None)
        latest = store.chunks.latest_run()
        assert latest is not None
        assert store.chunks.summary(latest)["verified_contiguous_through"] == 2599
    finally:
        store.close()
    assert [d["first_ledger"] for d in open_breaks] == [2700]
