"""GET /api/events/stream over real HTTP, read by examples/sse_consumer.py: every event once,
in order, across disconnects; filters; errors; heartbeats; slow clients cut off."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from examples.sse_consumer import follow, read_events

from stellar_reconciler.api import create_app
from stellar_reconciler.api.context import ApiContext
from stellar_reconciler.api.event_stream import EventStreams, close_event_streams
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import (
    network_event_ids,
    running_service,
    settings_for,
    stored_event_ids,
    wait_for,
)
from tests.loopback import cuttable_proxy

DISCONNECTS = 5


@asynccontextmanager
async def service_on(
    database_url: str, net: SimNetwork, **overrides: Any
) -> AsyncIterator[tuple[Service, str]]:
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, **overrides)
        async with running_service(settings) as (service, base):
            yield service, base


def streams_of(service: Service) -> EventStreams:
    streams: EventStreams = service.app.state.event_streams
    return streams


def all_events(base: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """What GET /api/events lists for these filters, every page."""
    rows: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=base, timeout=10) as http:
        while True:
            paging = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/events", params={**params, **paging}).json()
            rows.extend(page["events"])
            cursor = page["next_cursor"]
            if cursor is None:
                return rows


def first_events(
    base: str, params: dict[str, str], count: int, last_event_id: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The first `count` events one connection sends."""
    received: list[tuple[str, dict[str, Any]]] = []
    with httpx.Client(base_url=base, timeout=httpx.Timeout(10.0, read=30.0)) as http:
        for item in read_events(http, params, last_event_id):
            received.append(item)
            if len(received) == count:
                break
    return received


async def test_resumes_after_five_random_disconnects_during_a_catch_up(
    database_url: str,
) -> None:
    """Cut five times at random moments of a catch-up and resumed with Last-Event-ID, the
    example consumer gets exactly the network's events: each once, in id order."""
    net = SimNetwork(
        SimNetConfig(seed=131, first_ledger=100, prebuilt_ledgers=500, events_per_ledger=6)
    )
    truth = network_event_ids(net, net.first_ledger, net.latest_ledger)
    rng = random.Random(20261205)
    # Cut points in the first two thirds of the events, so every cut falls in the catch-up.
    cuts = sorted(rng.sample(range(1, len(truth) * 2 // 3), DISCONNECTS))
    async with service_on(
        database_url, net, start_ledger=str(net.first_ledger), batch_max_ledgers=5
    ) as (service, base):
        received: list[str] = []
        # The checkpoint when each cut happened: proof it was during the catch-up.
        cut_at_ledger: list[int | None] = []

        def consume() -> None:
            last_id = None
            with httpx.Client(base_url=base, timeout=httpx.Timeout(10.0, read=30.0)) as http:
                for cut in [*cuts, len(truth)]:
                    for event_id, event in read_events(http, {}, last_id):
                        assert event["id"] == event_id
                        received.append(event_id)
                        last_id = event_id
                        if len(received) >= cut:
                            break  # closes the connection mid-stream
                    if len(received) < len(truth):
                        cut_at_ledger.append(service.status.last_processed_ledger)

        await asyncio.wait_for(asyncio.to_thread(consume), 120)
        await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
        # Every connection the client closed ended its stream on the server too.
        await wait_for(lambda: streams_of(service).open_streams == 0, 10, "no open stream")
    assert len(cut_at_ledger) == DISCONNECTS
    assert all(ledger is None or ledger < net.latest_ledger for ledger in cut_at_ledger)
    assert len(received) == len(set(received))
    assert received == truth
    assert received == stored_event_ids(database_url)


async def test_follow_resumes_across_five_network_cuts_during_a_catch_up(
    database_url: str,
) -> None:
    """The example's follow() behind a proxy cut five times at random moments of a catch-up
    (mid-event as likely as not) reconnects by itself and yields the network's events, each
    once, in id order."""
    net = SimNetwork(
        SimNetConfig(seed=137, first_ledger=100, prebuilt_ledgers=600, events_per_ledger=6)
    )
    truth = network_event_ids(net, net.first_ledger, net.latest_ledger)
    rng = random.Random(20261206)
    async with service_on(
        database_url, net, start_ledger=str(net.first_ledger), batch_max_ledgers=2
    ) as (service, base):
        received: list[str] = []
        port = int(base.rsplit(":", 1)[1])
        with cuttable_proxy(port) as proxy:

            def consume() -> None:
                for event in follow(f"http://127.0.0.1:{proxy.port}", {}, retry_seconds=0.02):
                    received.append(event["id"])
                    if len(received) >= len(truth):
                        return

            # A daemon thread: were events missing, the test fails without waiting on it.
            consumer = threading.Thread(target=consume, daemon=True)
            consumer.start()
            cut_at_ledger: list[int | None] = []
            dropped: list[int] = []
            for _ in range(DISCONNECTS):
                seen = len(received)
                # Connected again (and reading) before the next cut.
                await wait_for(lambda s=seen: len(received) > s, 10, "an event since the cut")
                await asyncio.sleep(rng.uniform(0.0, 0.1))
                cut_at_ledger.append(service.status.last_processed_ledger)
                dropped.append(proxy.drop())
            await wait_for(lambda: not consumer.is_alive(), 60, "every event")
    assert dropped == [1] * DISCONNECTS
    assert all(ledger is None or ledger < net.latest_ledger for ledger in cut_at_ledger)
    assert received == truth


async def test_filters_and_from_ledger_match_the_list_endpoint(database_url: str) -> None:
    """contract_id, topic and from_ledger select what GET /api/events selects, in the same
    order and the same JSON shape; ids are the SSE ids."""
    net = SimNetwork(
        SimNetConfig(seed=17, first_ledger=300, prebuilt_ledgers=60, events_per_ledger=8)
    )
    async with service_on(database_url, net) as (service, base):
        await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
        everything = await asyncio.to_thread(all_events, base, {})
        contract = everything[len(everything) // 2]["contract_id"]
        name = next(e["name"] for e in everything if e["contract_id"] == contract)
        middle = everything[len(everything) // 2]["ledger"]
        for params in (
            {},
            {"contract_id": contract},
            {"topic": name},
            {"from_ledger": str(middle)},
            {"contract_id": contract, "topic": name, "from_ledger": str(middle)},
        ):
            expected = await asyncio.to_thread(all_events, base, params)
            assert 0 < len(expected) <= len(everything)
            got = await asyncio.to_thread(first_events, base, params, len(expected))
            assert [event for _, event in got] == expected, params
            assert [event_id for event_id, _ in got] == [e["id"] for e in expected]
        # Resuming in the middle of a filtered stream gives exactly the rest.
        filtered = await asyncio.to_thread(all_events, base, {"contract_id": contract})
        half = len(filtered) // 2
        rest = await asyncio.to_thread(
            first_events,
            base,
            {"contract_id": contract},
            len(filtered) - half,
            filtered[half - 1]["id"],
        )
        assert [event for _, event in rest] == filtered[half:]


async def test_bad_parameters_get_the_api_error_shape(database_url: str) -> None:
    """A malformed Last-Event-ID is a 400 naming the header; bad query values are 422s; both
    in the {"error", "detail"} shape of every other endpoint."""
    net = SimNetwork(SimNetConfig(seed=5, first_ledger=50, prebuilt_ledgers=5))
    async with (
        service_on(database_url, net) as (_service, base),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        for bad in ("42", "not-an-id", "0000000429496729600-000000001x"):
            response = await http.get("/api/events/stream", headers={"Last-Event-ID": bad})
            assert response.status_code == 400, bad
            body = response.json()
            assert body["error"].startswith("Last-Event-ID: must be the id of an event")
            assert body["detail"][0]["loc"] == ["header", "Last-Event-ID"]
        for query in ("contract_id=GABC", "from_ledger=1.5", "from_ledger=0", "topic=%21%21"):
            response = await http.get(f"/api/events/stream?{query}")
            assert response.status_code == 422, query
            body = response.json()
            assert set(body) == {"error", "detail"} and body["detail"][0]["loc"][0] == "query"


async def test_an_idle_stream_sends_heartbeats_and_wakes_on_a_commit(database_url: str) -> None:
    """Past the last event the stream sends `: ping` comments, then the next committed
    event as soon as a ledger closes."""
    net = SimNetwork(
        SimNetConfig(seed=23, first_ledger=70, prebuilt_ledgers=10, events_per_ledger=3)
    )
    async with service_on(database_url, net) as (service, base):
        await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
        streams_of(service).heartbeat_seconds = 0.2
        last = network_event_ids(net, net.first_ledger, net.latest_ledger)[-1]
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            http.stream("GET", "/api/events/stream", headers={"Last-Event-ID": last}) as response,
        ):
            lines = response.aiter_lines()
            assert await anext(lines) == ": ping"
            net.close_ledger()
            new_ids = network_event_ids(net, net.latest_ledger, net.latest_ledger)
            seen = [line async for line in _until(lines, f"id: {new_ids[-1]}")]
        assert [line[4:] for line in seen if line.startswith("id: ")] == new_ids


async def _until(lines: AsyncIterator[str], stop: str) -> AsyncIterator[str]:
    async for line in lines:
        yield line
        if line == stop:
            return


async def test_a_client_that_reads_nothing_is_cut_off_and_ingestion_goes_on(
    database_url: str,
) -> None:
    """A client that stops reading is disconnected after the send timeout (its connection
    ends without the chunked body's end), while the worker keeps committing to the tip."""
    net = SimNetwork(
        SimNetConfig(seed=41, first_ledger=500, prebuilt_ledgers=400, events_per_ledger=30)
    )
    async with service_on(database_url, net) as (service, base):
        await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger, 60)
        streams = streams_of(service)
        streams.send_timeout_seconds = 0.5
        port = int(base.rsplit(":", 1)[1])
        with socket.socket() as stalled:
            # A small receive window, so the server's writes stall after a few MB.
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", port))
            stalled.sendall(b"GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await wait_for(lambda: streams.open_streams == 1, 10, "the stream to open")
            net.close_ledgers(3)
            await wait_for(lambda: streams.open_streams == 0, 30, "the stalled client cut off")
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            received = await asyncio.to_thread(_read_to_end, stalled)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                metrics = (await http.get("/metrics")).text
        assert received.startswith(b"HTTP/1.1 200")
        assert not received.endswith(b"0\r\n\r\n")
        assert "reconciler_event_stream_cutoffs_total 1.0" in metrics
        assert "reconciler_event_streams 0.0" in metrics


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything the peer sent until it closed the connection."""
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_close_event_streams_ends_open_streams(database_url: str) -> None:
    """close_event_streams (called as the service stops) ends an open stream cleanly; what
    it sent before is a prefix of the events."""
    net = SimNetwork(SimNetConfig(seed=3, first_ledger=60, prebuilt_ledgers=5))
    async with service_on(database_url, net) as (service, base):
        await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            http.stream("GET", "/api/events/stream") as response,
        ):
            close_event_streams(service.app)
            body = [line async for line in response.aiter_lines()]
        sent = [line[4:] for line in body if line.startswith("id: ")]
        assert sent == network_event_ids(net, net.first_ledger, net.latest_ledger)[: len(sent)]


def test_openapi_documents_the_stream_and_its_errors() -> None:
    """The document gives the stream's media type, the Last-Event-ID header and a JSON 400."""
    document = create_app(ApiContext.__new__(ApiContext)).openapi()
    operation = document["paths"]["/api/events/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"application/json"} == set(operation["responses"]["400"]["content"])
    headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert headers == ["Last-Event-ID"]
    assert {"401", "422", "503"} <= set(operation["responses"])
