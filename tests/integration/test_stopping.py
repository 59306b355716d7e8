"""`reconciler run` as a real process: a stop signal ends it within STOP_DEADLINE_SECS whatever
the RPC or the database is doing, with nothing stored half-way; and a dead RPC costs a
bounded number of log lines, far fewer than one per poll."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from stellar_reconciler.config import libpq_url
from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.stopping import FORCED_EXIT_CODE, STOP_DEADLINE_SECS
from stellar_reconciler.store import DEFAULT_STREAM
from tests.conftest import PostgresTemplate
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    service_env,
    settings_for,
    stored_event_ids,
    stored_ledgers,
    wait_for_sync,
)
from tests.loopback import closed_port, silent_server


@contextlib.contextmanager
def service_process(env: dict[str, str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`reconciler run` with its log in `log_file` (a file: a pipe nobody reads could fill)."""
    script = Path(sys.executable).parent / "reconciler"
    launcher = (
        [str(script)] if script.exists() else [sys.executable, "-m", "stellar_reconciler.cli"]
    )
    command = [*launcher, "run"]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def log_lines(log_file: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log_file.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def health(port: int) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
    except httpx.TransportError:
        return None
    return body


def stop_and_wait(process: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    """Send `sig`; the exit code, failing the test if the process outlives the deadline."""
    process.send_signal(sig)
    try:
        return process.wait(timeout=STOP_DEADLINE_SECS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_DEADLINE_SECS}s after {sig.name}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_with_an_rpc_that_never_answers(sig: signal.Signals, tmp_path: Path) -> None:
    """With an RPC that accepts and never answers (30 s timeouts), health names the hung
    getHealth and its URL, and SIGTERM or SIGINT ends the process within the deadline, cleanly."""
    port = closed_port()
    with silent_server() as rpc_port:
        rpc_url = f"http://127.0.0.1:{rpc_port}/"
        settings = settings_for(
            f"sqlite:///{tmp_path / 'r.db'}", rpc_url, bind_addr=f"127.0.0.1:{port}"
        )
        env = service_env(settings) | {"RPC_TIMEOUT_SECS": "30"}
        log_file = tmp_path / "service.log"
        with service_process(env, log_file) as process:
            body = wait_for_sync(
                lambda: (h := health(port)) and h["reason"] and h,
                30,
                "health to name the call it waits for",
            )
            assert body["status"] == "starting" and body["healthy"] is False
            assert re.fullmatch(
                rf"waiting for getHealth from {re.escape(rpc_url)} \(no answer for \d+s\)",
                body["reason"],
            )
            assert stop_and_wait(process, sig) == 0
    events = [line["event"] for line in log_lines(log_file)]
    assert "stop_requested" in events and "service_stopped" in events


def process_gone(pid: int) -> bool:
    """True when `pid` has ended (a zombie waiting to be reaped counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_stop_during_a_catch_up_in_the_fetch_process_ends_the_child_too(tmp_path: Path) -> None:
    """A backlog fetched by the catch-up child process, whose getEvents never comes back:
    SIGTERM ends the service within the deadline, and the child with it."""
    net = SimNetwork(SimNetConfig(seed=12, first_ledger=2, prebuilt_ledgers=200))
    port = closed_port()
    log_file = tmp_path / "service.log"
    with serve_in_thread(net) as rpc_url:
        hang = net.faults.add(FaultKind.SLOW, method="getEvents", delay=60, times=None)
        settings = settings_for(
            f"sqlite:///{tmp_path / 'r.db'}",
            rpc_url,
            bind_addr=f"127.0.0.1:{port}",
            start_ledger="2",
        )
        env = service_env(settings) | {"CATCH_UP_PROCESS_LEDGERS": "50", "RPC_TIMEOUT_SECS": "90"}
        with service_process(env, log_file) as process:
            started = wait_for_sync(
                lambda: [
                    line
                    for line in log_lines(log_file)
                    if line["event"] == "child_started" and line["job"] == "fetch_process"
                ],
                60,
                "the fetch process to start",
            )
            wait_for_sync(lambda: hang.fired >= 1, 30, "the child's getEvents to hang")
            child = int(started[0]["pid"])
            assert not process_gone(child)
            assert stop_and_wait(process, signal.SIGTERM) == 0
        net.faults.clear()
    assert process_gone(child)


@pytest.mark.postgres
def test_stop_with_a_commit_blocked_in_the_database(
    postgres_template: PostgresTemplate, tmp_path: Path
) -> None:
    """A batch commit blocked on the checkpoint row (another connection holds its lock): the
    stop still ends the process within the deadline, and the blocked batch is not stored at
    all, while every batch before it is stored whole."""
    database_url = postgres_template.clone()
    plain_url = libpq_url(database_url)
    database = plain_url.rsplit("/", 1)[1]
    net = SimNetwork(
        SimNetConfig(seed=11, first_ledger=2, prebuilt_ledgers=20, events_per_ledger=5)
    )
    port = closed_port()
    log_file = tmp_path / "service.log"
    try:
        with serve_in_thread(net) as rpc_url, psycopg.connect(plain_url) as locker:
            settings = settings_for(
                database_url, rpc_url, bind_addr=f"127.0.0.1:{port}", start_ledger="2"
            )
            with service_process(service_env(settings), log_file) as process:
                wait_for_sync(
                    lambda: (h := health(port)) and h["last_processed_ledger"] == 21,
                    60,
                    "catch-up to ledger 21",
                )
                # The worker's row only: a maintenance marker (another row) blocked instead
                # would satisfy the wait below before the batch commit is even tried.
                locker.execute(
                    "SELECT * FROM checkpoints WHERE stream = %s FOR UPDATE", (DEFAULT_STREAM,)
                )
                net.close_ledgers(5)
                with psycopg.connect(plain_url, autocommit=True) as observer:
                    wait_for_sync(
                        lambda: (
                            observer.execute(
                                "SELECT count(*) FROM pg_stat_activity "
                                "WHERE datname = %s AND wait_event_type = 'Lock'",
                                (database,),
                            ).fetchone()
                            == (1,)
                        ),
                        30,
                        "the next batch commit to wait on the checkpoint row",
                    )
                exit_code = stop_and_wait(process, signal.SIGTERM)
            locker.rollback()
        assert exit_code == FORCED_EXIT_CODE
        forced = [line for line in log_lines(log_file) if line["event"] == "stop_forced"]
        assert len(forced) == 1 and "a batch commit in the database" in forced[0]["error"]
        assert stored_ledgers(database_url) == network_ledgers(net, 2, 21)
        assert stored_event_ids(database_url) == network_event_ids(net, 2, 21)
    finally:
        postgres_template.drop(database_url)


def test_a_dead_rpc_logs_a_bounded_number_of_lines(tmp_path: Path) -> None:
    """Against a refused port, polls back off and the outage is logged once at error level,
    then summarised at most every FAILURE_SUMMARY_SECS: no per-retry warnings, and far
    fewer lines than failed polls."""
    summary_secs = 1.0
    rpc_url = f"http://127.0.0.1:{closed_port()}/"
    settings = settings_for(f"sqlite:///{tmp_path / 'r.db'}", rpc_url)
    env = service_env(settings) | {
        "RPC_MAX_ATTEMPTS": "2",
        "POLL_FAILURE_MAX_BACKOFF_SECS": "0.1",
        "FAILURE_SUMMARY_SECS": str(summary_secs),
    }
    log_file = tmp_path / "service.log"

    def attempts_so_far() -> int:
        summaries = [
            line["attempts"]
            for line in log_lines(log_file)
            if line["event"] == "dependency_still_failing"
        ]
        return max(summaries, default=0)

    with service_process(env, log_file) as process:
        wait_for_sync(lambda: attempts_so_far() >= 40, 120, "40 failed polls")
        assert stop_and_wait(process, signal.SIGTERM) == 0
    lines = log_lines(log_file)
    events = [line["event"] for line in lines]
    failing = [line for line in lines if line["event"] == "dependency_failing"]
    summaries = [line for line in lines if line["event"] == "dependency_still_failing"]
    assert "stamina.retry_scheduled" not in events
    assert len(failing) == 1 and failing[0]["level"] == "error"
    assert rpc_url in failing[0]["reason"] and failing[0]["fault"] == "refused"
    # The schedule allows one summary per period of the outage, plus the first one's.
    first, last = (datetime.fromisoformat(line["timestamp"]) for line in (failing[0], lines[-1]))
    assert len(summaries) <= (last - first).total_seconds() / summary_secs + 1
    attempts = summaries[-1]["attempts"]
    assert len(failing) + len(summaries) <= attempts / 4
    # Apart from start-up and shutdown, the service logs nothing else while the RPC is down.
    ours = {line["event"] for line in lines if line["logger"].startswith("stellar_reconciler")}
    assert ours <= {
        "service_starting",
        "http_listening",
        "dependency_failing",
        "dependency_still_failing",
        "network_check_deferred",
        "stop_requested",
        "service_stopped",
    }
