"""The simulated network runs live: on a clock, under asyncio, and as its own process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, run_simnet, serve_in_thread
from stellar_reconciler.simnet.runner import bind
from stellar_reconciler.simnet.testing import result, rpc


def poll(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `check()` holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def test_ledgers_close_on_the_interval(client: httpx.Client) -> None:
    """With ledger_interval set, new ledgers appear by themselves, close times 1 s apart."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=5, ledger_interval=0.02))
    with serve_in_thread(net) as url:
        poll(lambda: result(client, url, "getHealth")["latestLedger"] >= 10)
        latest = result(client, url, "getLatestLedger")["sequence"]
        assert net.close_time(latest) - net.close_time(latest - 1) == 1


def test_control_api_closes_ledgers_and_reads_the_record(client: httpx.Client) -> None:
    """POST /_simnet/close adds ledgers; /_simnet/events and /_simnet/ledgers give the record."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=5, events_per_ledger=3))
    with serve_in_thread(net) as url:
        assert client.post(url + "_simnet/close", json={"count": 3}).json() == {"latestLedger": 9}
        assert result(client, url, "getHealth")["latestLedger"] == 9
        recorded = client.get(url + "_simnet/events", params={"from": 7, "to": 9}).json()["events"]
        served = result(client, url, "getEvents", {"startLedger": 7})["events"]
        assert recorded == served == net.record_events(7, 9)
        ledgers = client.get(url + "_simnet/ledgers", params={"from": 8, "to": 9}).json()["ledgers"]
        assert [x["hash"] for x in ledgers] == [net.ledger_hash(8), net.ledger_hash(9)]
        assert ledgers[1]["previousLedgerHash"] == ledgers[0]["hash"]
        status = client.get(url + "_simnet/status").json()
        assert status["contracts"]["escrow"] == net.escrow_contract_id
        assert client.post(url + "_simnet/close", json={"count": "many"}).status_code == 400


def test_same_seed_serves_identical_bytes(client: httpx.Client) -> None:
    """Two nodes built from one config answer getLedgers and getEvents byte for byte alike."""
    config = SimNetConfig(seed=99, first_ledger=50, prebuilt_ledgers=40, events_per_ledger=8)
    bodies = []
    for _ in range(2):
        with serve_in_thread(SimNetwork(config)) as url:
            bodies.append(
                [
                    client.post(
                        url, json={"jsonrpc": "2.0", "id": 1, "method": m, "params": p}
                    ).content
                    for m, p in [
                        ("getLedgers", {"startLedger": 50}),
                        ("getEvents", {"startLedger": 50, "pagination": {"limit": 1000}}),
                    ]
                ]
            )
    assert bodies[0] == bodies[1]


async def test_run_simnet_serves_until_stopped() -> None:
    """run_simnet serves on a given socket, reports its URL, and returns once stopped."""
    net = SimNetwork(SimNetConfig(prebuilt_ledgers=3))
    sock = bind("127.0.0.1", 0)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_simnet(net, stop_event=stop, sock=sock, log_level="warning", on_ready=ready.set_result)
    )
    url = await asyncio.wait_for(ready, 10)
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"})
    assert answer.json()["result"]["latestLedger"] == net.latest_ledger
    stop.set()
    await asyncio.wait_for(task, 10)
    sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_cli_runs_the_network_in_another_process(client: httpx.Client) -> None:
    """`python -m stellar_reconciler.simnet` serves with its options and --fault rules."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "stellar_reconciler.simnet",
        "--port",
        str(port),
        "--prebuilt",
        "20",
        "--first-ledger",
        "500",
        "--ledger-interval",
        "0",
        "--events-per-ledger",
        "2",
        "--fault",
        "getHealth:http_503:1",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"

    def listening() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return client.get(url + "_simnet/status").status_code == 200
        except httpx.TransportError:
            return False

    try:
        poll(listening, timeout=30)
        assert (
            client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"}).status_code
            == 503
        )
        health = result(client, url, "getHealth")
        assert (health["oldestLedger"], health["latestLedger"]) == (500, 519)
        assert client.get(url + "_simnet/requests").json() == {"requests": {"getHealth": 2}}
        assert "result" in rpc(client, url, "getEvents", {"startLedger": 500})
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr:
            process.stderr.close()
