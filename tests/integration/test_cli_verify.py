"""`reconciler verify` and `status` read what exists and create nothing; their exit codes tell
"could not repair" (1) from a bad setting (2), "could not reach" (3) and "nothing stored" (4)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

from sqlalchemy import delete, select, update

from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.simnet import serve_in_thread
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import events, ledgers
from stellar_reconciler.verification import run_verification
from tests.integration.harness import settings_for
from tests.integration.test_cli import RECONCILER, reconciler
from tests.integration.test_startup import NETWORK_A, NETWORK_B, fill, network

# What verify reads; the tests set them explicitly, so none may leak in from outside.
READ_SETTINGS = ("DATABASE_URL", "STELLAR_RPC_URL", "CONTRACT_IDS", "EVENT_TOPICS")


def run_in(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`reconciler ARGS` in `folder`, with only `env` of the settings verify reads."""
    merged = {k: v for k, v in os.environ.items() if k not in READ_SETTINGS}
    merged.update(env, RPC_MAX_ATTEMPTS="1")
    return subprocess.run(
        [str(RECONCILER), *args],
        cwd=folder,
        env=merged,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_status_and_verify_in_an_empty_folder_create_nothing(tmp_path: Path) -> None:
    """In an empty folder with no DATABASE_URL, status and verify say "no database at
    .../reconciler.db", exit 4, and leave the folder empty."""
    status = run_in(tmp_path, "status", "--url", f"http://127.0.0.1:{closed_port()}")
    verify = run_in(tmp_path, "verify")
    for result in (status, verify):
        assert result.returncode == 4, result.stderr
        assert f"no database at {tmp_path / 'reconciler.db'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_verify_with_a_missing_folder_says_so(tmp_path: Path) -> None:
    """A DATABASE_URL in a folder that does not exist: exit 2 naming the folder."""
    result = run_in(tmp_path, "verify", DATABASE_URL=f"sqlite:///{tmp_path}/gone/x.db")
    assert result.returncode == 2
    assert f"the folder {tmp_path / 'gone'} does not exist" in result.stderr


def test_verify_of_an_empty_database_is_nothing_stored(database_url: str, tmp_path: Path) -> None:
    """A migrated database with no ledgers: exit 4, "nothing is stored yet"."""
    result = run_in(tmp_path, "verify", DATABASE_URL=database_url)
    assert result.returncode == 4
    assert "nothing is stored yet" in result.stderr


async def test_verify_exit_codes_on_a_filled_database(database_url: str, tmp_path: Path) -> None:
    """Filled from network A: verify against A exits 0 with human values; without
    STELLAR_RPC_URL it says it would ask testnet and refuses (2); against network B it refuses
    (2); an RPC that refuses connections is 3; a stored hash the chain contradicts is 1."""
    net = network(NETWORK_A)
    await fill(database_url, net)
    db = {"DATABASE_URL": database_url}
    with serve_in_thread(net) as url_a, serve_in_thread(network(NETWORK_B, seed=42)) as url_b:
        clean = await asyncio.to_thread(run_in, tmp_path, "verify", STELLAR_RPC_URL=url_a, **db)
        unset = await asyncio.to_thread(run_in, tmp_path, "verify", **db)
        other = await asyncio.to_thread(run_in, tmp_path, "verify", STELLAR_RPC_URL=url_b, **db)
    down = await asyncio.to_thread(
        run_in, tmp_path, "verify", STELLAR_RPC_URL=f"http://127.0.0.1:{closed_port()}/", **db
    )
    assert clean.returncode == 0, clean.stderr
    assert "yes" in clean.stdout and "none" in clean.stdout
    assert "[]" not in clean.stdout and "True" not in clean.stdout
    assert unset.returncode == 2
    assert "STELLAR_RPC_URL is not set: asking https://soroban-testnet.stellar.org" in (
        unset.stderr
    )
    assert NETWORK_A in unset.stderr
    assert other.returncode == 2
    assert NETWORK_A in other.stderr and NETWORK_B in other.stderr
    assert down.returncode == 3, down.stderr

    store = Store.open(database_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                update(ledgers)
                .where(ledgers.c.sequence == net.first_ledger + 3)
                .values(hash="0" * 64)
            )
    finally:
        store.close()
    with serve_in_thread(net) as url_a:
        broken = await asyncio.to_thread(run_in, tmp_path, "verify", STELLAR_RPC_URL=url_a, **db)
    assert broken.returncode == 1, broken.stdout + broken.stderr


def test_status_of_a_stopped_service_shows_human_values(tmp_path: Path) -> None:
    """`status` of a migrated, empty database prints "-" and "none", never None or []."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "BIND_ADDR": f"127.0.0.1:{closed_port()}"}
    assert reconciler("migrate", env=env).returncode == 0
    result = reconciler("status", env=env)
    assert result.returncode == 3
    assert "None" not in result.stdout and "[]" not in result.stdout
    assert "none" in result.stdout


async def test_verify_settles_expected_records_on_the_events_its_repairs_add(
    database_url: str,
) -> None:
    """A gap `reconciler verify` fills runs the batch hooks as the service's repairs do: a
    record waiting for an event of the gap is matched by the fill."""
    net = network(NETWORK_A)
    await fill(database_url, net)
    store = Store.open(database_url)
    try:
        with store.engine.begin() as conn:
            row = conn.execute(
                select(events.c.ledger, events.c.contract_id, events.c.name, events.c.tx_hash)
                .where(
                    events.c.in_successful_contract_call,
                    events.c.name.is_not(None),
                    # Inside what is stored, so its removal is a gap.
                    events.c.ledger.between(net.first_ledger + 1, net.latest_ledger - 1),
                )
                .order_by(events.c.id)
                .limit(1)
            ).one()
            conn.execute(delete(events).where(events.c.ledger == row.ledger))
            conn.execute(delete(ledgers).where(ledgers.c.sequence == row.ledger))
        spec = ExpectationSpec.model_validate(
            {
                "external_id": "in-the-gap",
                "contract_id": row.contract_id,
                "event_name": row.name,
                "tx_hash": row.tx_hash,
                "deadline_ledger": net.latest_ledger + 100,
            }
        )
        store.expectations.create([spec])
        assert store.expectations.get("in-the-gap")["status"] == "pending"  # type: ignore[index]
        with serve_in_thread(net) as url:
            report = await run_verification(settings_for(database_url, url), None, None)
        assert [row.ledger, row.ledger] in report["gaps_filled"]
        record = store.expectations.get("in-the-gap")
        assert record is not None and record["status"] == "matched"
        assert record["event_ledger"] == row.ledger
    finally:
        store.close()
