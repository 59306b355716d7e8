"""The lake over S3: a real S3-compatible server (moto's standalone server) on loopback."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stellar_reconciler.errors import LakeObjectCorruptError, LakeObjectMissingError
from stellar_reconciler.lake import Lake, LakeLayout, open_store
from stellar_reconciler.meta_ledger import MetaLedger
from stellar_reconciler.simnet import lake as simlake
from stellar_reconciler.simnet.config import SimNetConfig
from stellar_reconciler.simnet.network import SimNetwork

pytestmark = pytest.mark.slow
BUCKET = "ledgers"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server as a subprocess on 127.0.0.1, with one empty bucket; requests are
    signed with moto's test credentials taken from the standard environment variables."""
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_REGION", "us-east-1")
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.fail("moto_server is not installed: pip install -e '.[dev]' brings it")
    port = _free_port()
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.put(f"{endpoint}/{BUCKET}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("moto_server did not start within 30 s")
            time.sleep(0.1)  # polling a starting server, not waiting for a result
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
        patch.undo()


def _read(lake: Lake, first: int, last: int) -> list[MetaLedger]:
    async def collect() -> list[MetaLedger]:
        return [ledger async for ledger in lake.ledgers(first, last)]

    return asyncio.run(collect())


def test_s3_lake_gives_the_simnet_events_id_for_id(s3_endpoint: str) -> None:
    """Published to S3 and read back through LAKE_URL s3://bucket/prefix with an endpoint:
    every event getEvents serves for the range, with equal values, and nothing else."""
    network = SimNetwork(SimNetConfig(seed=5, first_ledger=2000, prebuilt_ledgers=64))
    store = open_store(f"s3://{BUCKET}/testnet", s3_endpoint)
    simlake.publish(network, store, 2000, 2063, LakeLayout(network.passphrase, 8, 4))
    lake = Lake(store, network.passphrase, prefetch=2)
    ledgers = _read(lake, 2003, 2057)
    assert [ledger.header.sequence for ledger in ledgers] == list(range(2003, 2058))
    got = {e.id: e.value_xdr for ledger in ledgers for e in ledger.events}
    truth = simlake.truth(network, 2003, 2057)
    assert got == {event_id: record["value"] for event_id, record in truth.items()}
    assert lake.bytes_fetched > 0


def test_s3_missing_and_truncated_objects_name_their_keys(s3_endpoint: str) -> None:
    """Over S3 too: a deleted object is missing, a truncated one corrupt, each by its key."""
    network = SimNetwork(SimNetConfig(seed=6, first_ledger=3000, prebuilt_ledgers=10))
    store = open_store(f"s3://{BUCKET}/faults", s3_endpoint)
    keys = simlake.publish(network, store, 3000, 3009)
    simlake.damage(store, keys[4], "missing")
    with pytest.raises(LakeObjectMissingError, match=keys[4]):
        _read(Lake(store, network.passphrase), 3000, 3009)
    simlake.damage(store, keys[2], "truncated")
    with pytest.raises(LakeObjectCorruptError, match=keys[2]):
        _read(Lake(store, network.passphrase), 3000, 3003)
