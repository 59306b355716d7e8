"""The simulated network run with --lake-dir: its lake equals its JSON-RPC getEvents answers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
from obstore.store import LocalStore

from stellar_reconciler.lake import Lake
from stellar_reconciler.meta_ledger import MetaLedger, rpc_record
from stellar_reconciler.simnet.config import DEFAULT_PASSPHRASE
from stellar_reconciler.simnet.testing import result
from tests.integration.test_simnet_runner import free_port, poll


def test_cli_lake_dir_publishes_what_get_events_serves(tmp_path: Path) -> None:
    """`python -m stellar_reconciler.simnet --lake-dir DIR` writes its history as a lake before
    serving; every event read from the lake equals, id for id and field for field, what its
    JSON-RPC getEvents serves over HTTP for the same ledgers."""
    port = free_port()
    lake_dir = tmp_path / "lake"
    command = [
        sys.executable,
        "-m",
        "stellar_reconciler.simnet",
        "--port",
        str(port),
        "--prebuilt",
        "40",
        "--first-ledger",
        "600",
        "--ledger-interval",
        "0",
        "--events-per-ledger",
        "6",
        "--log-level",
        "warning",
        "--lake-dir",
        str(lake_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    with httpx.Client(timeout=10) as client:

        def listening() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return client.get(url + "_simnet/status").status_code == 200
            except httpx.TransportError:
                return False

        try:
            poll(listening, timeout=60)
            served = result(
                client,
                url,
                "getEvents",
                {"startLedger": 600, "endLedger": 640, "pagination": {"limit": 10000}},
            )["events"]
        finally:
            process.terminate()
            process.wait(timeout=15)
            if process.stderr:
                process.stderr.close()

    async def read() -> list[MetaLedger]:
        lake = Lake(LocalStore(str(lake_dir)), DEFAULT_PASSPHRASE)
        return [ledger async for ledger in lake.ledgers(600, 639)]

    ledgers = asyncio.run(read())
    assert [ledger.header.sequence for ledger in ledgers] == list(range(600, 640))
    from_lake = [rpc_record(e) for ledger in ledgers for e in ledger.events]
    assert len(served) > 100
    assert from_lake == served
