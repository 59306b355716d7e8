"""/metrics through outages: unknown values have no sample, known ones stay with their age,
and nothing on /metrics or /api/stream depends on the database answering."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stellar_reconciler.service import Service
from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from tests.conftest import ADMIN_URL, PostgresTemplate
from tests.integration.harness import running_service, settings_for, wait_for
from tests.integration.test_live_stream import SnapshotReader

ADMIN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
EXPECTED = {
    "external_id": "outage-1",
    "contract_id": "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC",
    "event_name": "transfer",
    "amount": "1000",
    "deadline_ledger": 10_000,
}
STATUS_GAUGES = (
    "reconciler_latest_ledger",
    "reconciler_checkpoint_ledger",
    "reconciler_ledger_lag",
)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of a Prometheus text exposition, by sample name."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float | None:
    rows = found.get(name, [])
    return rows[0][1] if rows else None


async def scrape(http: httpx.AsyncClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return samples(response.text)


async def test_rpc_down_from_the_start_exposes_no_ledger_numbers(database_url: str) -> None:
    """RPC failing from the first call: no latest_ledger, lag or checkpoint sample (not 0),
    health 0, and no `_created` series."""
    net = SimNetwork(SimNetConfig(seed=91, first_ledger=50, prebuilt_ledgers=10))
    net.faults.add(FaultKind.HTTP_500, times=None)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await wait_for(lambda: service.status.poll_failing, what="a failed poll")
            found = await scrape(http)
            for name in STATUS_GAUGES:
                assert name not in found, f"{name} has a sample while unknown"
                assert f"{name}_observed_timestamp_seconds" not in found
            assert value(found, "reconciler_healthy") == 0
            assert not [name for name in found if name.endswith("_created")]
            assert value(found, "reconciler_rpc_requests_total") is not None


async def test_rpc_outage_keeps_last_known_values_with_their_timestamps(database_url: str) -> None:
    """Synced, then every RPC call fails: latest, checkpoint and lag keep their last values and
    their observed timestamps stop at or before the outage's start."""
    net = SimNetwork(SimNetConfig(seed=92, first_ledger=50, prebuilt_ledgers=15))
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            before = await scrape(http)
            assert value(before, "reconciler_latest_ledger") == net.latest_ledger
            assert value(before, "reconciler_checkpoint_ledger") == net.latest_ledger
            assert value(before, "reconciler_ledger_lag") == 0
            outage_started = time.time()
            net.faults.add(FaultKind.HTTP_500, times=None)
            net.close_ledgers(3)
            await wait_for(lambda: service.status.poll_failing, what="a failed poll")
            # Every poll in flight when the fault was added has ended by now.
            failed_at = time.time()
            during = await scrape(http)
            assert value(during, "reconciler_healthy") == 0
            assert value(during, "reconciler_latest_ledger") == net.latest_ledger - 3
            assert value(during, "reconciler_checkpoint_ledger") == net.latest_ledger - 3
            assert value(during, "reconciler_ledger_lag") == 0
            seen = value(during, "reconciler_latest_ledger_observed_timestamp_seconds")
            assert seen is not None and seen <= failed_at
            lag_seen = value(during, "reconciler_ledger_lag_observed_timestamp_seconds")
            assert lag_seen == seen
            await wait_for(lambda: service.status.consecutive_failures >= 6, what="more failures")
            later = await scrape(http)
            assert value(later, "reconciler_latest_ledger_observed_timestamp_seconds") == seen
            assert seen <= max(outage_started, failed_at)


class PostgresOutage:
    """A real PostgreSQL outage for one database: connections refused and open ones ended."""

    def __init__(self, database_url: str) -> None:
        self.database = database_url.rsplit("/", 1)[1]

    def _admin(self, sql: str, *params: str) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql, params or None)

    def cut(self, _service: Service) -> None:
        self._admin(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            self.database,
        )

    def restore(self) -> None:
        self._admin(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')


class SqliteOutage:
    """The SQLite file's volume goes away (its directory renamed) and the open connections
    are lost with it; new ones cannot open the file until it comes back."""

    def __init__(self, volume: Path) -> None:
        self.volume = volume
        self.away = volume.with_name(volume.name + "-gone")

    def cut(self, service: Service) -> None:
        self.volume.rename(self.away)
        service.store.engine.dispose()

    def restore(self) -> None:
        if self.away.exists():
            self.away.rename(self.volume)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def outage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, PostgresOutage | SqliteOutage]]:
    """A database URL and the means to make that database really unavailable."""
    if request.param == "sqlite":
        volume = tmp_path / "volume"
        volume.mkdir()
        sqlite = SqliteOutage(volume)
        yield f"sqlite:///{volume / 'reconciler.db'}", sqlite
        sqlite.restore()
        return
    template: PostgresTemplate = request.getfixturevalue("postgres_template")
    url = template.clone()
    postgres = PostgresOutage(url)
    yield url, postgres
    postgres.restore()
    template.drop(url)


async def test_metrics_and_stream_answer_while_the_database_is_down(
    outage: tuple[str, PostgresOutage | SqliteOutage],
) -> None:
    """Database unreachable: /metrics answers 200 with the last known values (a pending
    expectation included) and refresh timestamps that stop moving; /api/stream and
    /api/status answer with the outage named; all recovers when the database is back."""
    database_url, switch = outage
    net = SimNetwork(SimNetConfig(seed=93, first_ledger=50, prebuilt_ledgers=15))
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            service.telemetry.store_refresh = 0.1
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            posted = await http.post("/api/expectations", json=EXPECTED, headers=AUTH)
            assert posted.status_code == 201, posted.text
            await wait_for(
                lambda: service.metrics.registry.get_sample_value(
                    "reconciler_expectations", {"status": "pending"}
                ),
                what="the pending expectation to be counted",
            )
            before = await scrape(http)
            switch.cut(service)
            cut_at = time.time()
            await wait_for(lambda: service.telemetry.database_error, what="the refresh to fail")
            during = await scrape(http)
            refreshed = value(during, "reconciler_expectations_refreshed_timestamp_seconds")
            assert refreshed is not None and refreshed <= cut_at
            assert value(during, "reconciler_checkpoint_ledger") == net.latest_ledger
            assert value(during, "reconciler_latest_ledger") == net.latest_ledger
            assert ({"status": "pending"}, 1.0) in during["reconciler_expectations"]
            assert found_counts(during, "reconciler_expectations") == found_counts(
                before, "reconciler_expectations"
            )
            assert found_counts(during, "reconciler_discrepancies_open") == found_counts(
                before, "reconciler_discrepancies_open"
            )
            status = await http.get("/api/status")
            assert status.status_code == 200 and "unavailable" in status.json()["database_error"]
            async with http.stream("GET", "/api/stream") as response:
                assert response.status_code == 200
                snapshot = await SnapshotReader(response).next()
            assert snapshot["database_error"] and "unavailable" in snapshot["database_error"]
            assert snapshot["status"]["database_error"] == snapshot["database_error"]
            assert snapshot["status"]["stored"]["ledgers"] is None
            switch.restore()
            await wait_for(
                lambda: service.telemetry.database_error is None, what="the refresh to recover"
            )
            after = await scrape(http)
            again = value(after, "reconciler_expectations_refreshed_timestamp_seconds")
            assert again is not None and again > cut_at


def found_counts(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> Any:
    return sorted((sorted(labels.items()), count) for labels, count in found.get(name, []))
