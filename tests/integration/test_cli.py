"""The `reconciler` command as a user runs it: exit codes, messages, migrate, status, gaps."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for

RECONCILER = Path(sys.executable).parent / "reconciler"


def reconciler(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(RECONCILER), *args],
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BIND_ADDR", "nowhere"),
        ("START_LEDGER", "yesterday"),
        ("RPC_MAX_ATTEMPTS", "many"),
        ("CONTRACT_IDS", "CNOTACONTRACT"),
        ("DATABASE_URL", "oracle://x"),
        ("EVENT_TOPICS", "transfer,*,*,*,*"),
    ],
)
def test_bad_setting_exits_2_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    """`reconciler run` with a bad setting exits 2 and prints one line naming it, no traceback."""
    result = reconciler(
        "run",
        env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", variable: value},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "expected" in lines[0]
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_schema(database_url: str) -> None:
    """`reconciler migrate` brings a database to the newest revision and says which."""
    result = reconciler("migrate", env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert "revision" in result.stdout


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    """A database that cannot be opened gives a readable error, not a traceback."""
    result = reconciler("migrate", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "error:" in result.stderr


async def test_status_shows_a_table_of_the_running_service(database_url: str) -> None:
    """`reconciler status --url` prints the running service's health as a table."""
    net = SimNetwork(SimNetConfig(seed=31, first_ledger=10, prebuilt_ledgers=15))
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            result = await asyncio.to_thread(reconciler, "status", "--url", base)
    assert result.returncode == 0, result.stderr
    assert "synced" in result.stdout and "24" in result.stdout


def test_status_without_a_service_reads_the_database(tmp_path: Path) -> None:
    """With no service listening, `reconciler status` says so, shows the stored checkpoint, and
    exits 3 (could not reach)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "BIND_ADDR": "127.0.0.1:1"}
    assert reconciler("migrate", env=env).returncode == 0
    result = reconciler("status", env=env)
    assert result.returncode == 3
    assert "not reachable" in result.stdout


async def test_retention_gap_blocks_until_acknowledged(database_url: str) -> None:
    """START_LEDGER older than the RPC keeps: degraded with the exact range and command; the
    acknowledge-gap command records it and the worker moves on."""
    net = SimNetwork(
        SimNetConfig(seed=32, first_ledger=1000, prebuilt_ledgers=300, retention_window=100)
    )
    assert net.oldest_ledger == 1200
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, start_ledger="1000")
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.status.blocking_reason, what="the retention gap")
            health = service.status.health()
            assert health["status"] == "degraded"
            assert health["detail"]["first_missing_ledger"] == 1000
            assert health["detail"]["last_missing_ledger"] == 1199
            assert health["detail"]["command"] == "reconciler acknowledge-gap --through-oldest"
            assert service.store.checkpoint().ledger == 999
            open_gaps = service.store.discrepancies.listing("retention_gap", True)
            assert [(d["first_ledger"], d["last_ledger"]) for d in open_gaps] == [(1000, 1199)]
            result = await asyncio.to_thread(
                reconciler,
                "acknowledge-gap",
                "--through-oldest",
                env={"DATABASE_URL": database_url},
            )
            assert result.returncode == 0, result.stderr
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, what="moving on"
            )
            assert service.status.health()["healthy"]
            gaps = service.store.gaps.acknowledged()
            assert [(g.first_ledger, g.last_ledger) for g in gaps] == [(1000, 1199)]
            assert service.store.ledger_bounds() == (1200, 1299, 100)
            assert service.store.discrepancies.open_counts()["retention_gap"] == 0


def test_acknowledge_gap_needs_exactly_one_limit(tmp_path: Path) -> None:
    """acknowledge-gap refuses to guess: --through N or --through-oldest, not both or neither."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    for args in ((), ("--through", "5", "--through-oldest")):
        result = reconciler("acknowledge-gap", *args, env=env)
        assert result.returncode == 2
        assert "exactly one" in result.stderr


async def test_start_ledger_oldest_follows_a_sliding_window(database_url: str) -> None:
    """START_LEDGER=oldest on an empty database starts at whatever is oldest at the first commit."""
    net = SimNetwork(
        SimNetConfig(seed=33, first_ledger=1000, prebuilt_ledgers=300, retention_window=50)
    )
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            assert service.store.ledger_bounds()[0] == 1250
            assert service.status.health()["healthy"]
