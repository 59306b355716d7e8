"""/api/stream over real HTTP, the dashboard's files and the offline /docs page."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from stellar_reconciler.api.live import Snapshot, close_streams
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for

ADMIN = "admin-token-0123456789"
READER = "read-token-0123456789"
# Far above the one-second promise: this proves a snapshot follows a commit, the benchmark
# measures how soon.
DEADLINE = 10.0


def network() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=61, first_ledger=200, prebuilt_ledgers=30, events_per_ledger=4)
    )


class SnapshotReader:
    """Reads the `data:` of each Server-Sent Event from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, within: float = DEADLINE) -> dict[str, Any]:
        deadline = time.monotonic() + within
        data: list[str] = []
        async for line in self.lines:
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                return dict(json.loads("\n".join(data)))
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no snapshot within {within}s")

    async def until(self, condition: Any, within: float = DEADLINE) -> dict[str, Any]:
        """The first snapshot for which `condition(snapshot)` holds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            snapshot = await self.next(deadline - time.monotonic())
            if condition(snapshot):
                return snapshot
        raise AssertionError(f"no matching snapshot within {within}s")


@asynccontextmanager
async def following(
    database_url: str, net: SimNetwork, **overrides: Any
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, **overrides)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, timeout=DEADLINE) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            yield service, http


async def test_stream_sends_a_whole_snapshot_on_connect(database_url: str) -> None:
    """The first event is a complete Snapshot: status as /api/status, newest events first."""
    net = network()
    async with (
        following(database_url, net) as (_service, http),
        http.stream("GET", "/api/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        snapshot = await SnapshotReader(response).next()
        newest = (await http.get("/api/events", params={"order": "desc", "limit": 20})).json()
        status = (await http.get("/api/status")).json()
    Snapshot.model_validate(snapshot)
    assert snapshot["events"] == newest["events"]
    assert snapshot["status"]["last_processed_ledger"] == net.latest_ledger
    assert set(snapshot["status"]) == set(status)
    assert snapshot["telemetry"]["interval_seconds"] > 0
    assert set(snapshot["discrepancies"]["open_counts"]) >= {"chain_break", "unexpected"}


async def test_a_closed_ledger_brings_a_new_snapshot(database_url: str) -> None:
    """After a ledger closes and its batch commits, a snapshot showing it follows."""
    net = network()
    async with (
        following(database_url, net) as (_service, http),
        http.stream("GET", "/api/stream") as response,
    ):
        reader = SnapshotReader(response)
        first = await reader.next()
        latest = net.close_ledger()
        shown = await reader.until(lambda s: s["status"]["last_processed_ledger"] == latest)
    assert shown["version"] > first["version"]
    assert shown["events"][0]["ledger"] == latest


async def test_stream_takes_the_token_as_a_query_parameter_only_when_needed(
    database_url: str,
) -> None:
    """With READ_TOKEN set the stream takes a header or ?token=; no other route takes ?token=."""
    net = network()
    async with following(database_url, net, admin_token=ADMIN, read_token=READER) as (_, http):
        refused = await http.get("/api/stream")
        wrong = await http.get("/api/stream", params={"token": "not-the-token-0123"})
        elsewhere = await http.get("/api/status", params={"token": READER})
        for token in (READER, ADMIN):
            async with http.stream("GET", "/api/stream", params={"token": token}) as response:
                assert response.status_code == 200
                await SnapshotReader(response).next()
        headers = {"authorization": f"Bearer {READER}"}
        async with http.stream("GET", "/api/stream", headers=headers) as response:
            assert response.status_code == 200
    assert refused.status_code == 401 and "READ_TOKEN" in refused.json()["error"]
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]
    assert elsewhere.status_code == 401


async def test_stream_ticket_opens_the_stream_without_a_token_in_the_url(
    database_url: str,
) -> None:
    """POST /api/stream/ticket (token in the header) gives a ticket that opens the stream;
    no ticket without a token, and a made-up ticket is refused."""
    net = network()
    async with following(database_url, net, admin_token=ADMIN, read_token=READER) as (_, http):
        anonymous = await http.post("/api/stream/ticket")
        issued = await http.post(
            "/api/stream/ticket", headers={"authorization": f"Bearer {READER}"}
        )
        ticket = issued.json()["ticket"]
        async with http.stream("GET", "/api/stream", params={"ticket": ticket}) as response:
            assert response.status_code == 200
            await SnapshotReader(response).next()
        forged = await http.get("/api/stream", params={"ticket": ticket[::-1]})
    assert anonymous.status_code == 401
    assert issued.status_code == 200 and issued.json()["expires_in_seconds"] == 60
    assert READER not in ticket and ADMIN not in ticket
    assert forged.status_code == 401 and "ticket" in forged.json()["error"]


async def test_close_streams_ends_open_streams(database_url: str) -> None:
    """close_streams (for shutdown) ends an open stream instead of leaving it to a timeout."""
    net = network()
    async with (
        following(database_url, net) as (service, http),
        http.stream("GET", "/api/stream") as response,
    ):
        reader = SnapshotReader(response)
        await reader.next()
        close_streams(service.server.config.app)
        started = time.monotonic()
        with pytest.raises(AssertionError, match="no snapshot"):
            await reader.next()
        assert time.monotonic() - started < DEADLINE


async def test_openapi_documents_the_stream_and_docs_work_offline(database_url: str) -> None:
    """/api/stream is in the OpenAPI schema with its Snapshot; /docs loads only local files."""
    net = network()
    async with following(database_url, net) as (_, http):
        schema = (await http.get("/openapi.json")).json()
        docs = (await http.get("/docs")).text
        assets = [await http.get(url) for url in re.findall(r'(?:src|href)="([^"]+)"', docs)]
    stream = schema["paths"]["/api/stream"]["get"]
    content = stream["responses"]["200"]["content"]["text/event-stream"]
    data = content["itemSchema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/Snapshot"}
    assert "token" in {p["name"] for p in stream["parameters"]}
    assert "http://" not in docs and "https://" not in docs
    assert assets and all(a.status_code == 200 for a in assets)


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value and value.startswith("static/"):
                self.urls.append(value)


async def test_dashboard_page_and_every_file_it_loads_are_served(database_url: str) -> None:
    """GET / is the static page, and every script, style and module it loads is served."""
    net = network()
    async with following(database_url, net) as (_, http):
        page = await http.get("/")
        again = await http.get("/")
        parser = _Assets()
        parser.feed(page.text)
        served = {url: await http.get(f"/{url}") for url in parser.urls}
        main = served["static/js/main.js"].text
        modules = set(re.findall(r'from "\./([a-z]+\.js)"', main))
        for name in modules:
            served[name] = await http.get(f"/static/js/{name}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == again.text
    assert "http://" not in page.text and "https://" not in page.text
    assert {"static/js/main.js", "static/vendor/uplot/uPlot.iife.min.js"} <= set(served)
    assert modules >= {"api.js", "render.js", "stream.js", "telemetry.js"}
    assert all(r.status_code == 200 for r in served.values()), {
        url: r.status_code for url, r in served.items()
    }
    assert served["static/js/main.js"].headers["cache-control"] == "no-cache"
