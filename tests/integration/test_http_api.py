"""The HTTP surface of a running service: health, metrics, status, events and ledgers."""

from __future__ import annotations

import time

import httpx
import pytest

from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for


async def test_health_is_503_while_rpc_answers_500_and_200_after(database_url: str) -> None:
    """With every RPC call failing with HTTP 500, /health turns 503 and says why; then 200 again."""
    net = SimNetwork(SimNetConfig(seed=21, first_ledger=50, prebuilt_ledgers=20))
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, poll_interval_secs=0.2)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            assert (await http.get("/health")).status_code == 200
            net.faults.add(FaultKind.HTTP_500, times=None)
            started = time.monotonic()
            body = None
            while time.monotonic() - started < 15:
                response = await http.get("/health")
                if response.status_code == 503:
                    body = response.json()
                    break
            assert body is not None, "health never turned 503"
            assert body["healthy"] is False and body["status"] == "degraded"
            assert "500" in body["reason"] and "500" in body["last_error"]
            net.faults.clear()
            net.close_ledgers(2)
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            response = await http.get("/health")
            assert response.status_code == 200 and response.json()["status"] == "synced"


async def test_health_body_and_status_fields(database_url: str) -> None:
    """/health and /api/status carry the documented fields with sane values."""
    net = SimNetwork(SimNetConfig(seed=22, first_ledger=50, prebuilt_ledgers=20))
    with serve_in_thread(net) as url:
        async with (
            running_service(settings_for(database_url, url)) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            health = (await http.get("/health")).json()
            assert set(health) >= {
                "status",
                "healthy",
                "last_processed_ledger",
                "latest_ledger",
                "ledger_lag",
                "last_success_at",
                "last_error",
            }
            assert health["ledger_lag"] == 0 and health["last_processed_ledger"] == 69
            status = (await http.get("/api/status")).json()
            assert status["network_passphrase"] == net.passphrase
            assert status["protocol_version"] == 23
            assert status["uptime_seconds"] > 0
            assert status["stored"] == {"first_ledger": 50, "last_ledger": 69, "ledgers": 20}
            assert "database_url" not in status["settings"]


async def test_metrics_are_prometheus_text_with_reconciler_names(database_url: str) -> None:
    """/metrics exposes the documented reconciler_* series plus process metrics."""
    net = SimNetwork(
        SimNetConfig(seed=23, first_ledger=50, prebuilt_ledgers=20, events_per_ledger=3)
    )
    with serve_in_thread(net) as url:
        async with (
            running_service(settings_for(database_url, url)) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "reconciler_processed_ledgers_total 20.0",
        "reconciler_latest_ledger 69.0",
        "reconciler_checkpoint_ledger 69.0",
        "reconciler_ledger_lag 0.0",
        'reconciler_rpc_requests_total{method="getEvents",outcome="ok"}',
        "reconciler_rpc_request_duration_seconds_bucket",
        "reconciler_batch_duration_seconds_count",
        "reconciler_events_indexed_total",
        "reconciler_processing_errors_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert name in text, name


BAD_EVENT_QUERIES = [
    "limit=0",
    "limit=100000",
    "limit=ten",
    "from_ledger=-1",
    "from_ledger=abc",
    "to_ledger=99999999999",
    "from_ledger=10&to_ledger=5",
    "contract_id=GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7",
    "contract_id=nonsense",
    "cursor=abc",
    "cursor=0000000000000000001",
    "topic=%21%21%21",
]


@pytest.fixture
async def service_base(database_url: str):  # type: ignore[no-untyped-def]
    net = SimNetwork(
        SimNetConfig(seed=24, first_ledger=50, prebuilt_ledgers=40, events_per_ledger=6)
    )
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            yield net, base


@pytest.mark.parametrize("query", BAD_EVENT_QUERIES)
async def test_bad_event_parameters_get_422_with_a_message(service_base, query: str) -> None:  # type: ignore[no-untyped-def]
    """Every malformed /api/events parameter is a 422 with an error message, never a 500."""
    _, base = service_base
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get(f"/api/events?{query}")
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    parameter = query.split("=")[0]
    assert parameter in body["error"]


@pytest.mark.parametrize(
    "query", ["limit=0", "from_ledger=x", "from_ledger=9&to_ledger=1", "limit=1001"]
)
async def test_bad_ledger_parameters_get_422(service_base, query: str) -> None:  # type: ignore[no-untyped-def]
    """Every malformed /api/ledgers parameter is a 422 with an error message."""
    _, base = service_base
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get(f"/api/ledgers?{query}")
    assert response.status_code == 422 and response.json()["error"]


async def test_events_page_through_everything_in_order(service_base) -> None:  # type: ignore[no-untyped-def]
    """Following next_cursor returns every stored event once, in ledger and id order."""
    net, base = service_base
    seen: list[dict] = []  # type: ignore[type-arg]
    async with httpx.AsyncClient(base_url=base) as http:
        cursor = None
        while True:
            params = {"limit": 17, **({"cursor": cursor} if cursor else {})}
            body = (await http.get("/api/events", params=params)).json()
            seen.extend(body["events"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
    expected = net.record_events(net.first_ledger, net.latest_ledger)
    assert [e["id"] for e in seen] == [e["id"] for e in expected]
    assert [e["ledger"] for e in seen] == sorted(e["ledger"] for e in seen)
    first = seen[0]
    assert set(first) >= {
        "id",
        "ledger",
        "ledger_closed_at",
        "contract_id",
        "type",
        "tx_hash",
        "topics",
        "value",
        "topics_xdr",
        "value_xdr",
    }
    assert (
        first["topics_xdr"] == expected[0]["topic"] and first["value_xdr"] == expected[0]["value"]
    )


async def test_events_filter_by_contract_topic_and_range(service_base) -> None:  # type: ignore[no-untyped-def]
    """contract_id, topic and the ledger range narrow /api/events exactly."""
    net, base = service_base
    async with httpx.AsyncClient(base_url=base) as http:
        body = (
            await http.get(
                "/api/events",
                params={
                    "contract_id": net.token_contract_id,
                    "topic": "transfer",
                    "from_ledger": 55,
                    "to_ledger": 70,
                    "limit": 1000,
                },
            )
        ).json()
        ledgers = (await http.get("/api/ledgers", params={"from_ledger": 60, "limit": 5})).json()
    assert body["events"], "the simulated token emits transfers"
    assert all(
        e["contract_id"] == net.token_contract_id
        and e["topics"][0] == "transfer"
        and 55 <= e["ledger"] <= 70
        for e in body["events"]
    )
    expected = [
        e["id"] for e in net.record_events(55, 70) if e["contractId"] == net.token_contract_id
    ]
    assert {e["id"] for e in body["events"]} <= set(expected)
    assert [row["sequence"] for row in ledgers["ledgers"]] == [60, 61, 62, 63, 64]
    assert ledgers["next_from_ledger"] == 65


async def test_openapi_documents_the_public_api(service_base) -> None:  # type: ignore[no-untyped-def]
    """The OpenAPI schema at /openapi.json lists every public endpoint; /docs serves it."""
    _, base = service_base
    async with httpx.AsyncClient(base_url=base) as http:
        schema = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
    assert {"/health", "/metrics", "/api/status", "/api/events", "/api/ledgers"} <= set(
        schema["paths"]
    )
    assert docs.status_code == 200


async def test_events_newest_first_pages_backwards(service_base) -> None:  # type: ignore[no-untyped-def]
    """order=desc returns the newest events first and its cursor pages towards older ones."""
    net, base = service_base
    async with httpx.AsyncClient(base_url=base) as http:
        first = (await http.get("/api/events", params={"order": "desc", "limit": 7})).json()
        second = (
            await http.get(
                "/api/events", params={"order": "desc", "limit": 7, "cursor": first["next_cursor"]}
            )
        ).json()
        bad = await http.get("/api/events", params={"order": "sideways"})
    ids = [e["id"] for e in first["events"] + second["events"]]
    expected = [e["id"] for e in net.record_events(net.first_ledger, net.latest_ledger)]
    assert ids == list(reversed(expected))[:14]
    assert bad.status_code == 422 and "order" in bad.json()["error"]
