"""Start-up: what `reconciler run` (and `migrate`, `demo`) refuse before writing anything, and
what they wait out instead of exiting."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from stellar_reconciler.config import sqlalchemy_url
from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store import Store
from stellar_reconciler.store.database import create_database_engine
from stellar_reconciler.store.migrate import upgrade
from tests.conftest import ADMIN_URL, PostgresTemplate
from tests.integration.harness import running_service, settings_for, wait_for
from tests.integration.test_cli import RECONCILER, reconciler

NETWORK_A = "Simulated network A ; test"
NETWORK_B = "Simulated network B ; test"


def network(passphrase: str, seed: int = 41) -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=seed, first_ledger=10, prebuilt_ledgers=12, network_passphrase=passphrase)
    )


@contextlib.contextmanager
def listening_socket() -> Iterator[socket.socket]:
    """A loopback socket that listens and never accepts: a port in use, or an RPC that counts
    connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def was_connected(sock: socket.socket) -> bool:
    try:
        connection, _ = sock.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


async def fill(database_url: str, net: SimNetwork) -> int:
    """Index all of `net` into the database; returns the checkpoint."""
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
    return net.latest_ledger


def checkpoint(database_url: str) -> int | None:
    store = Store.open(database_url)
    try:
        return store.checkpoint().ledger
    finally:
        store.close()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr, an `error:` line: no log lines, no traceback."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


async def test_other_network_is_refused_at_start_up(database_url: str) -> None:
    """Filled from network A, started against network B: exit 2, one line naming both
    passphrases and what to do, and the checkpoint has not moved."""
    filled = await fill(database_url, network(NETWORK_A))
    with serve_in_thread(network(NETWORK_B, seed=42)) as url_b:
        result = await asyncio.to_thread(
            reconciler,
            "run",
            env={
                "DATABASE_URL": database_url,
                "STELLAR_RPC_URL": url_b,
                "BIND_ADDR": "127.0.0.1:0",
            },
        )
    assert result.returncode == 2
    line = one_error_line(result)
    assert NETWORK_A in line and NETWORK_B in line
    assert "point DATABASE_URL at a new database" in line and "STELLAR_RPC_URL" in line
    assert checkpoint(database_url) == filled


async def test_same_network_is_accepted_and_recorded(database_url: str) -> None:
    """The first run records the network's passphrase; a second run on it is accepted."""
    net = network(NETWORK_A)
    await fill(database_url, net)
    store = Store.open(database_url)
    try:
        assert store.network.passphrase() == NETWORK_A
    finally:
        store.close()
    net.close_ledger()
    assert await fill(database_url, net) == net.latest_ledger


async def test_changed_filters_are_refused_before_the_rpc_or_http(database_url: str) -> None:
    """CONTRACT_IDS changed on a filled database: `run` exits 2 with one line before it
    connects to the RPC; `migrate` refuses it too."""
    net = network(NETWORK_A)
    await fill(database_url, net)
    with listening_socket() as rpc:
        env = {
            "DATABASE_URL": database_url,
            "STELLAR_RPC_URL": f"http://127.0.0.1:{rpc.getsockname()[1]}/",
            "BIND_ADDR": "127.0.0.1:0",
            "CONTRACT_IDS": net.token_contract_id,
        }
        result = await asyncio.to_thread(reconciler, "run", env=env)
        migrated = await asyncio.to_thread(reconciler, "migrate", env=env)
        assert not was_connected(rpc)
    assert result.returncode == 2
    assert "CONTRACT_IDS/EVENT_TOPICS" in one_error_line(result)
    assert migrated.returncode == 2
    assert "CONTRACT_IDS/EVENT_TOPICS" in one_error_line(migrated)


def test_run_on_a_port_in_use_is_one_line_naming_bind_addr(tmp_path: Path) -> None:
    """`reconciler run` on a taken port: exit 2, one line advising another BIND_ADDR."""
    with listening_socket() as taken:
        port = taken.getsockname()[1]
        result = reconciler(
            "run",
            env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "BIND_ADDR": f"127.0.0.1:{port}"},
        )
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "in use" in line and "BIND_ADDR" in line
    assert not (tmp_path / "x.db").exists()


def test_demo_on_a_port_in_use_is_one_line_naming_port() -> None:
    """`reconciler demo --port N` on a taken port: exit 2, one line advising --port."""
    with listening_socket() as taken:
        port = taken.getsockname()[1]
        result = reconciler("demo", "--port", str(port))
    assert result.returncode == 2
    line = one_error_line(result)
    assert "in use" in line and "--port" in line and "BIND_ADDR" not in line


@pytest.mark.postgres
async def test_database_down_at_start_up_is_waited_out(
    postgres_template: PostgresTemplate,
) -> None:
    """A PostgreSQL database that does not exist yet: the HTTP server is up with /health 503
    naming the database; once it is created the service indexes the network."""
    name = f"{postgres_template.prefix}_late"
    url = sqlalchemy_url(ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    net = network(NETWORK_A)
    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        with serve_in_thread(net) as rpc_url:
            async with running_service(settings_for(url, rpc_url)) as (service, base):
                async with httpx.AsyncClient() as client:
                    health = await client.get(f"{base}/health")
                assert health.status_code == 503
                assert name in health.json()["reason"]
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template.template}"')
                await wait_for(
                    lambda: service.status.last_processed_ledger == net.latest_ledger,
                    within=60,
                    what="indexing after the database came up",
                )
                async with httpx.AsyncClient() as client:
                    assert (await client.get(f"{base}/health")).status_code == 200
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _migrate_after(barrier: Any, url: str) -> str:
    """In a child process: wait until every sibling is ready, then migrate `url`."""
    engine = create_database_engine(url)
    try:
        barrier.wait(timeout=60)
        try:
            upgrade(engine)
        except DatabaseUnavailableError as exc:
            return str(exc)
        return "ok"
    finally:
        engine.dispose()


def test_simultaneous_migrations_of_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    """Six processes migrating one new SQLite file at the same instant all succeed: they queue
    on the write lock instead of one failing with "database is locked"."""
    url = f"sqlite:///{tmp_path}/new.db"
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(6)
    with context.Pool(6) as pool:
        outcomes = pool.starmap(_migrate_after, [(barrier, url)] * 6, chunksize=1)
    assert outcomes == ["ok"] * 6


def test_reconciler_migrate_twice_at_once_on_a_new_file(tmp_path: Path) -> None:
    """Two `reconciler migrate` commands started together on a new SQLite file both exit 0."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/new.db"}
    processes = [
        subprocess.Popen(
            [str(RECONCILER), "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "revision" in out


async def test_other_network_found_after_start_up_halts_the_worker(database_url: str) -> None:
    """getNetwork failing at start-up defers the check to the worker, which refuses the other
    network before its first batch: /health 503 naming both passphrases, checkpoint unmoved."""
    filled = await fill(database_url, network(NETWORK_A))
    net_b = network(NETWORK_B, seed=42)
    net_b.faults.add("http_500", method="getNetwork", times=3)
    with serve_in_thread(net_b) as url_b:
        async with running_service(settings_for(database_url, url_b)) as (service, base):
            await wait_for(lambda: service.status.blocking_reason, what="the worker to halt")
            async with httpx.AsyncClient() as client:
                health = await client.get(f"{base}/health")
    assert health.status_code == 503
    assert NETWORK_A in health.json()["reason"] and NETWORK_B in health.json()["reason"]
    assert checkpoint(database_url) == filled
