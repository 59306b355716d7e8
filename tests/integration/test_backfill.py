"""`reconciler backfill --from A --to B`: what is missing, of any age, filled from the lake and
the RPC, chained on both sides; resumable, idempotent, and loud about a broken lake object."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from stellar_reconciler.lake import LakeLayout
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.lake import damage, publish
from tests.integration.harness import (
    network_ledgers,
    running_service,
    settings_for,
    stored_ledgers,
    wait_for,
)
from tests.integration.test_cli import RECONCILER
from tests.integration.test_retention import (
    BATCHES_PER_PARTITION,
    LEDGERS_PER_BATCH,
    expected_events,
    lake_for,
    stored_events,
)

ADMIN = "admin-token-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
# Settings the command reads that the tests set themselves; none may leak in from outside.
OWN_SETTINGS = ("DATABASE_URL", "STELLAR_RPC_URL", "CONTRACT_IDS", "EVENT_TOPICS", "LAKE_URL")


def backfill(
    database_url: str, rpc_url: str, *args: str, lake_url: str = "", chunk_ledgers: int = 10_000
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}
    env.update(
        DATABASE_URL=database_url,
        STELLAR_RPC_URL=rpc_url,
        LAKE_URL=lake_url,
        RPC_MAX_ATTEMPTS="2",
        BATCH_MAX_LEDGERS="16",
        LOG_FORMAT="json",
        BACKFILL_CHUNK_LEDGERS=str(chunk_ledgers),
    )
    return subprocess.run(
        [str(RECONCILER), "backfill", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


async def indexed_from(database_url: str, net: SimNetwork, url: str, start: int) -> None:
    """The service run from `start` to the network's tip, then stopped."""
    settings = settings_for(database_url, url, start_ledger=str(start))
    async with running_service(settings) as (service, _):
        await wait_for(
            lambda: service.status.last_processed_ledger == net.latest_ledger, what="sync"
        )


def network(seed: int) -> SimNetwork:
    """Ledgers 1024-1423; the RPC keeps 1324-1423."""
    return SimNetwork(
        SimNetConfig(
            seed=seed,
            first_ledger=1024,
            prebuilt_ledgers=400,
            retention_window=100,
            events_per_ledger=3,
        )
    )


async def test_backfill_fills_the_past_from_the_lake_and_the_rpc_and_a_second_run_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """Indexed from 1350; `backfill --from 1100 --to 1349` reads 1100-1323 from the lake and
    1324-1349 from the RPC (it still has them), chained into the stored 1350: the store then
    equals the network from 1100, events included. Run again, it finds nothing missing and
    writes nothing."""
    net = network(91)
    _, lake_url = lake_for(net, tmp_path / "lake", 1024, 1423)
    with serve_in_thread(net) as url:
        await indexed_from(database_url, net, url, 1350)
        first = backfill(database_url, url, "--from", "1100", "--to", "1349", lake_url=lake_url)
        shown = report_of(first)
        assert "missing │ 1100-1349" in shown
        assert "from lake │ 1100-1323" in shown and "from rpc │ 1324-1349" in shown
        assert "ledgers written │ 250" in shown
        assert stored_ledgers(database_url) == network_ledgers(net, 1100, 1423)
        assert stored_events(database_url) == expected_events(net, 1100, 1423)

        again = report_of(
            backfill(database_url, url, "--from", "1024", "--to", "1349", lake_url=lake_url)
        )
        assert "missing │ 1024-1099" in again and "ledgers written │ 76" in again
        third = report_of(
            backfill(database_url, url, "--from", "1024", "--to", "1349", lake_url=lake_url)
        )
        assert "missing │ none" in third and "ledgers written │ 0" in third
    assert stored_ledgers(database_url) == network_ledgers(net, 1024, 1423)
    assert stored_events(database_url) == expected_events(net, 1024, 1423)


async def test_a_corrupt_object_stops_the_backfill_naming_it_and_a_second_run_resumes(
    database_url: str, tmp_path: Path
) -> None:
    """The lake object of 1200-1207 is corrupt: backfill in chunks of 50 exits 1 naming its
    key; every chunk but 1174-1223 (which holds the object) is stored, and nothing of that one.
    Republished, the next run writes only what is still missing, and the store equals the
    network."""
    net = network(92)
    lake_store, lake_url = lake_for(net, tmp_path / "lake", 1024, 1423)
    layout = LakeLayout(net.passphrase, LEDGERS_PER_BATCH, BATCHES_PER_PARTITION)
    broken = layout.batch_key(1200)
    damage(lake_store, broken, "truncated")
    with serve_in_thread(net) as url:
        await indexed_from(database_url, net, url, 1350)
        failed = backfill(
            database_url, url, "--from", "1024", "--to", "1349", lake_url=lake_url, chunk_ledgers=50
        )
        assert failed.returncode == 1, failed.stderr
        assert f"lake object '{broken}'" in failed.stderr
        assert "chunk 1174-1223" in failed.stderr
        assert stored_ledgers(database_url) == [
            *network_ledgers(net, 1024, 1173),
            *network_ledgers(net, 1224, 1423),
        ]

        publish(net, lake_store, 1200, 1207, layout)
        resumed = report_of(
            backfill(database_url, url, "--from", "1024", "--to", "1349", lake_url=lake_url)
        )
        assert "missing │ 1174-1223" in resumed and "ledgers written │ 50" in resumed
    assert stored_ledgers(database_url) == network_ledgers(net, 1024, 1423)
    assert stored_events(database_url) == expected_events(net, 1024, 1423)


async def test_backfill_refuses_what_it_may_not_write_or_cannot_read(
    database_url: str, tmp_path: Path
) -> None:
    """Past the checkpoint (the worker's to write) and older than the RPC keeps with no
    LAKE_URL: exit 2 saying why, nothing written. A lake of another network: exit 1 naming
    its configuration object."""
    net = network(93)
    other = SimNetwork(
        SimNetConfig(
            seed=93,
            first_ledger=1024,
            prebuilt_ledgers=400,
            network_passphrase="Another Network ; 2026",
        )
    )
    _, foreign_url = lake_for(other, tmp_path / "foreign", 1024, 1031)
    with serve_in_thread(net) as url:
        await indexed_from(database_url, net, url, 1350)
        before = stored_ledgers(database_url)
        ahead = backfill(database_url, url, "--from", "1300", "--to", "1500")
        assert ahead.returncode == 2 and "the worker has indexed up to 1423" in ahead.stderr
        no_lake = backfill(database_url, url, "--from", "1300", "--to", "1349")
        assert no_lake.returncode == 2
        assert "ledgers 1300-1323 are older than the RPC keeps" in no_lake.stderr
        assert "set LAKE_URL" in no_lake.stderr
        foreign = backfill(
            database_url, url, "--from", "1300", "--to", "1349", lake_url=foreign_url
        )
        # A lake of another network is a setting to change (LAKE_URL), as verify reports it too.
        assert foreign.returncode == 2
        assert "lake object '.config.json'" in foreign.stderr
        assert "Another Network ; 2026" in foreign.stderr
        assert stored_ledgers(database_url) == before


async def test_post_backfills_runs_a_job_that_fills_the_past_and_reports_it(
    database_url: str, tmp_path: Path
) -> None:
    """The running service, indexed from 1350 with LAKE_URL set: POST /api/backfills for
    1100-1349 (older than the RPC keeps, so no 422 for that) is a job that ends done at 100%,
    1100-1323 from the lake and 1324-1349 from the RPC, the store then equal to the network;
    a range past the checkpoint is a 422 naming to_ledger."""
    net = network(94)
    _, lake_url = lake_for(net, tmp_path / "lake", 1024, 1423)
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url,
            url,
            start_ledger="1350",
            lake_url=lake_url,
            admin_token=ADMIN,
            verify_every_ledgers=0,
        )
        async with running_service(settings) as (service, base), httpx.AsyncClient() as http:
            await wait_for(lambda: service.status.last_processed_ledger == 1423, what="sync")
            ahead = await http.post(
                f"{base}/api/backfills", json={"from_ledger": 1300, "to_ledger": 1500}, headers=AUTH
            )
            assert ahead.status_code == 422 and "to_ledger" in ahead.json()["error"]
            response = await http.post(
                f"{base}/api/backfills", json={"from_ledger": 1100, "to_ledger": 1349}, headers=AUTH
            )
            assert response.status_code == 202, response.text
            job = response.json()
            assert (job["kind"], job["total_ledgers"]) == ("backfill", 250)

            def finished() -> bool:
                current = service.controls.job(job["id"])
                return current is not None and current.state in ("done", "failed")

            await wait_for(finished, what="the backfill job")
            final = (await http.get(f"{base}/api/jobs/{job['id']}")).json()
            status = (await http.get(f"{base}/api/status")).json()
    assert final["state"] == "done", final["error"]
    assert final["progress"] == 1.0 and final["percent"] == 100.0
    assert final["rate_ledgers_per_sec"] > 0 and final["eta_seconds"] == 0.0
    assert status["backfill"]["verified_contiguous_through"] == 1349
    assert status["backfill"]["chunks"]["done"] == 1
    assert final["result"]["from_lake"] == [[1100, 1323]]
    assert final["result"]["from_rpc"] == [[1324, 1349]]
    assert final["result"]["ledgers_written"] == 250
    assert stored_ledgers(database_url) == network_ledgers(net, 1100, 1423)
    assert stored_events(database_url) == expected_events(net, 1100, 1423)
