"""The reliability test plan: inject one fault at a time into a running service and report, for
each, whether it survived, how many events were lost or stored twice, and how long it took to
recover without a human.

    python -m bench.reliability                       # SQLite and PostgreSQL, 50 kills, 5 restarts
    python -m bench.reliability --databases sqlite --kills 10 --db-restarts 0

Faults: SIGKILL at random moments of a catch-up (so some land inside a commit), PostgreSQL
restarts, RPC answers of HTTP 429/500/502/503, a hung RPC, garbage and truncated bodies,
rejected requests (JSON-RPC -32600/-32601/-32602/-32700), a lagging node (getHealth -32603), the
head moving back, a range of events served twice, and a full disk under SQLite. "Lost" and
"duplicated" compare every stored event id with what the simulated network emitted. The result
table goes to stdout (Markdown) and bench/results/reliability.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.databases import admin_url, fresh_database, postgres_available
from bench.procstat import free_port, stop
from bench.rpcproxy import RpcProxy, running_proxy
from bench.simnet import Simnet, running_simnet
from stellar_reconciler.config import sqlalchemy_url

RESULTS = Path("bench/results")
# A fault counts as recovered when the service is healthy and caught up within this long.
RECOVERY_LIMIT = 180.0
FAST_SETTINGS = {
    "POLL_INTERVAL_SECS": "0.2",
    "RPC_TIMEOUT_SECS": "2",
    "RPC_MAX_ATTEMPTS": "3",
    "RPC_INITIAL_BACKOFF_MS": "100",
    "RPC_MAX_BACKOFF_SECS": "1",
    "BATCH_MAX_LEDGERS": "100",
    "LOG_LEVEL": "info",
}


@dataclass
class Outcome:
    fault: str
    database: str
    injections: int = 0
    survived: bool = True
    lost: int = 0
    duplicated: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    needs_human: bool = False
    note: str = ""

    def row(self) -> str:
        times = self.recovery_seconds
        recovery = f"{statistics.median(times):.1f} / {max(times):.1f}" if times else "n/a"
        return (
            f"| {self.fault} | {self.database} | {self.injections} | "
            f"{'yes' if self.survived else 'NO'} | {self.lost} | {self.duplicated} | "
            f"{recovery} | {'yes' if self.needs_human else 'no'} | {self.note} |"
        )


class ServiceUnderTest:
    """`reconciler run` as a child process that can be killed and started again."""

    def __init__(self, database_url: str, rpc_url: str, start: int, log: Path, **extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **FAST_SETTINGS,
            "DATABASE_URL": database_url,
            "STELLAR_RPC_URL": rpc_url,
            "BIND_ADDR": f"127.0.0.1:{self.port}",
            "START_LEDGER": str(start),
            **extra,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(timeout=5)

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stellar_reconciler.cli", "run"],
                env=self.env,
                stdout=sink,
                stderr=sink,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process, 30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            response = self.client.get(f"{self.url}/health")
            return response.status_code, response.json()
        except (httpx.TransportError, ValueError):
            return 0, {}

    def checkpoint(self) -> int:
        return int(self.health()[1].get("last_processed_ledger") or 0)


def wait_until(check: Callable[[], bool], limit: float, step: float = 0.1) -> float | None:
    """Seconds until `check()` held, or None when it did not within `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    return None


def network_tip(simnet: Simnet) -> int:
    return int(httpx.get(simnet.control_url, timeout=10).json()["latestLedger"])


def truth(simnet: Simnet, first: int, last: int) -> list[str]:
    """Every event id the simulated network emitted in ledgers first..last."""
    ids: list[str] = []
    for start in range(first, last + 1, 2000):
        end = min(last, start + 1999)
        answer = httpx.get(
            f"{simnet.url}_simnet/events", params={"from": start, "to": end}, timeout=60
        )
        ids.extend(event["id"] for event in answer.json()["events"])
    return ids


def stored(database_url: str) -> tuple[list[str], int]:
    """Stored event ids (each once) and how many rows there are in all."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(text("SELECT id FROM events ORDER BY id"))]
    finally:
        engine.dispose()
    return sorted(set(ids)), len(ids)


def compare(outcome: Outcome, simnet: Simnet, database_url: str, through: int) -> None:
    expected = truth(simnet, simnet.first_ledger, through)
    ids, rows = stored(database_url)
    outcome.lost = len(set(expected) - set(ids))
    outcome.duplicated = rows - len(ids) + len(set(ids) - set(expected))


def synced(service: ServiceUnderTest, simnet: Simnet, at_least: int | None = None) -> bool:
    code, body = service.health()
    target = at_least if at_least is not None else network_tip(simnet)
    return code == 200 and int(body.get("last_processed_ledger") or 0) >= target


def sigkill(kind: str, database_url: str, kills: int, workdir: Path) -> Outcome:
    """SIGKILL at a random moment of a catch-up, `kills` times, restarting each time."""
    outcome = Outcome("SIGKILL mid catch-up", kind)
    rng = random.Random(54)
    with running_simnet(ledgers=max(20_000, kills * 800), events_per_ledger=20) as simnet:
        service = ServiceUnderTest(
            database_url, simnet.url, simnet.first_ledger, workdir / f"sigkill-{kind}.log"
        )
        for _ in range(kills):
            service.start()
            before = _stored_checkpoint(database_url)
            waited = wait_until(lambda b=before: service.checkpoint() > b, RECOVERY_LIMIT)
            if waited is None:
                outcome.survived = False
                outcome.note = "no progress after a restart"
                break
            outcome.recovery_seconds.append(waited)
            time.sleep(rng.uniform(0.0, 1.5))
            service.kill()
            outcome.injections += 1
        service.start()
        if wait_until(lambda: synced(service, simnet), RECOVERY_LIMIT) is None:
            outcome.survived = False
            outcome.note = "did not finish the catch-up after the last kill"
        service.stop()
        compare(outcome, simnet, database_url, _stored_checkpoint(database_url))
        outcome.note = outcome.note or "recovery: restart to the first new commit"
    return outcome


def _stored_checkpoint(database_url: str) -> int:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT max(sequence) FROM ledgers")).scalar()
    except Exception:  # noqa: BLE001 - an empty database has no table yet: nothing stored
        value = None
    finally:
        engine.dispose()
    return int(value or 0)


def postgres_restarts(database_url: str, restarts: int, workdir: Path) -> Outcome:
    """PostgreSQL restarted (fast shutdown: every connection cut) while the service catches up."""
    outcome = Outcome("PostgreSQL restart", "postgres")
    cluster = _postgres_cluster()
    if cluster is None:
        outcome.survived = False
        outcome.note = "pg_ctlcluster not found: not run"
        return outcome
    with running_simnet(ledgers=3_000, events_per_ledger=20, ledger_interval=0.5) as simnet:
        service = ServiceUnderTest(
            database_url, simnet.url, simnet.first_ledger, workdir / "pg-restart.log"
        )
        service.start()
        wait_until(lambda: synced(service, simnet), RECOVERY_LIMIT)
        for _ in range(restarts):
            subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True)
            outcome.injections += 1
            target = network_tip(simnet)
            waited = wait_until(lambda t=target: synced(service, simnet, t), RECOVERY_LIMIT)
            if waited is None or not service.alive():
                outcome.survived = service.alive()
                outcome.needs_human = True
                outcome.note = "not healthy and caught up within the limit"
                break
            outcome.recovery_seconds.append(waited)
        last = service.checkpoint()
        service.stop()
        compare(outcome, simnet, database_url, last)
        outcome.note = outcome.note or "recovery: restart done to healthy and caught up"
    return outcome


def _postgres_cluster() -> list[str] | None:
    """The Debian cluster to restart: RELIABILITY_PG_CLUSTER ("VERSION NAME"), else the first
    version's `main`. Point BENCH_POSTGRES_URL at a cluster of its own to keep other users of
    the machine's PostgreSQL out of the way."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    chosen = os.environ.get("RELIABILITY_PG_CLUSTER", "").split()
    if len(chosen) == 2:
        return ["--skip-systemctl-redirect", *chosen]
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["--skip-systemctl-redirect", version, "main"]


@dataclass(frozen=True)
class RpcFault:
    name: str
    rule: dict[str, Any] | None = None
    bend: str | None = None


RPC_FAULTS = (
    RpcFault("RPC HTTP 429 (Retry-After 1)", {"kind": "http_429", "retryAfter": "1"}),
    RpcFault("RPC HTTP 500", {"kind": "http_500"}),
    RpcFault("RPC HTTP 502", {"kind": "http_502"}),
    RpcFault("RPC HTTP 503", {"kind": "http_503"}),
    RpcFault("RPC hang (no answer)", {"kind": "slow", "delay": 30}),
    RpcFault("RPC connection dropped", {"kind": "drop"}),
    RpcFault("RPC garbage body (HTML, 200)", {"kind": "non_json"}),
    RpcFault("RPC truncated body", {"kind": "truncated"}),
    RpcFault("RPC wrong-shape result", {"kind": "wrong_shape"}),
    RpcFault("RPC rejected -32600", {"kind": "rpc_error", "code": -32600, "message": "bad"}),
    RpcFault("RPC rejected -32601", {"kind": "rpc_error", "code": -32601, "message": "bad"}),
    RpcFault("RPC rejected -32602", {"kind": "rpc_error", "code": -32602, "message": "bad"}),
    RpcFault("RPC parse error -32700", {"kind": "rpc_error", "code": -32700, "message": "bad"}),
    RpcFault("lagging node (getHealth -32603)", {"kind": "rpc_error", "method": "getHealth"}),
    RpcFault("head moves back 50 ledgers", bend="head_behind"),
    RpcFault("range of events served twice", bend="replay_events"),
)


def rpc_faults(
    kind: str, database_url: str, seconds: float, workdir: Path, only: str = ""
) -> list[Outcome]:
    """Each RPC fault (those whose name contains `only`) for `seconds` against a service that
    follows a live network."""
    outcomes: list[Outcome] = []
    with (
        running_simnet(ledgers=500, events_per_ledger=20, ledger_interval=0.5) as simnet,
        running_proxy(simnet.url) as (proxy, proxy_url),
    ):
        service = ServiceUnderTest(
            database_url, proxy_url, simnet.first_ledger, workdir / f"rpc-{kind}.log"
        )
        service.start()
        if wait_until(lambda: synced(service, simnet), RECOVERY_LIMIT) is None:
            service.stop()
            return [Outcome("RPC faults", kind, survived=False, note="never synced")]
        for fault in (f for f in RPC_FAULTS if only.lower() in f.name.lower()):
            outcome = Outcome(fault.name, kind, injections=1)
            seen_unhealthy = _inject(simnet, proxy, fault, seconds, service)
            target = network_tip(simnet)
            waited = wait_until(lambda t=target: synced(service, simnet, t), RECOVERY_LIMIT)
            if not service.alive():
                outcome.survived = False
                outcome.needs_human = True
                outcome.note = "the service exited"
                outcomes.append(outcome)
                service.start()
                wait_until(lambda: synced(service, simnet), RECOVERY_LIMIT)
                continue
            if waited is None:
                outcome.needs_human = True
                outcome.note = "still unhealthy or behind after the limit"
            else:
                outcome.recovery_seconds.append(waited)
                outcome.note = "503 seen during the fault" if seen_unhealthy else "stayed 200"
            outcomes.append(outcome)
        last = service.checkpoint()
        service.stop()
        whole = Outcome("all RPC faults, one history", kind)
        compare(whole, simnet, database_url, last)
        for outcome in outcomes:
            outcome.lost, outcome.duplicated = whole.lost, whole.duplicated
    return outcomes


def _inject(
    simnet: Simnet, proxy: RpcProxy, fault: RpcFault, seconds: float, service: ServiceUnderTest
) -> bool:
    """Hold the fault for `seconds`; True when /health said 503 at some point meanwhile."""
    faults_url = f"{simnet.url}_simnet/faults"
    if fault.rule is not None:
        httpx.post(faults_url, json={**fault.rule, "times": None}, timeout=10).raise_for_status()
    elif fault.bend == "head_behind":
        proxy.head_behind = 50
    elif fault.bend == "replay_events":
        proxy.replay_events = True
    unhealthy = False
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        unhealthy = unhealthy or service.health()[0] == 503
        time.sleep(0.2)
    httpx.delete(faults_url, timeout=10).raise_for_status()
    proxy.head_behind, proxy.replay_events = 0, False
    return unhealthy


def full_disk(workdir: Path) -> Outcome:
    """SQLite on a small filesystem that fills up mid catch-up, then gets room again."""
    outcome = Outcome("disk full (SQLite)", "sqlite", injections=1)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        outcome.survived = False
        outcome.note = "needs root to mount a small tmpfs: not run"
        return outcome
    mount = Path(tempfile.mkdtemp(prefix="reliability-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    try:
        database_url = f"sqlite:///{mount}/full.db"
        with running_simnet(ledgers=20_000, events_per_ledger=20) as simnet:
            service = ServiceUnderTest(
                database_url, simnet.url, simnet.first_ledger, workdir / "disk.log"
            )
            # Leave room for the start of the history only.
            filler = mount / "filler"
            with filler.open("wb") as sink:
                sink.truncate(0)
                sink.write(b"\0" * (36 * 1024 * 1024))
            service.start()
            outcome.note = _disk_fills(service)
            filler.unlink()
            waited = wait_until(lambda: synced(service, simnet), RECOVERY_LIMIT)
            if waited is None or not service.alive():
                outcome.survived = service.alive()
                outcome.needs_human = True
                outcome.note += "; not caught up after room was made"
            else:
                outcome.recovery_seconds.append(waited)
            last = _stored_checkpoint(database_url)
            service.stop()
            compare(outcome, simnet, database_url, last)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)
    return outcome


def _disk_fills(service: ServiceUnderTest) -> str:
    """Wait until progress stops for lack of room; say what /health said then."""
    last, still_since = -1, time.monotonic()
    while time.monotonic() - still_since < 10:
        code, body = service.health()
        checkpoint = int(body.get("last_processed_ledger") or 0)
        if checkpoint != last:
            last, still_since = checkpoint, time.monotonic()
        time.sleep(0.5)
    code, body = service.health()
    return f"full at ledger {last}: /health {code} {body.get('reason')!r}"[:160]


def report(outcomes: list[Outcome]) -> str:
    lines = [
        "| fault | database | injected | survived | events lost | duplicated "
        "| recovery s (median / max) | needs a human | note |",
        "|---|---|---:|---|---:|---:|---|---|---|",
    ]
    lines.extend(outcome.row() for outcome in outcomes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--db-restarts", type=int, default=5)
    parser.add_argument("--fault-seconds", type=float, default=6.0)
    parser.add_argument("--skip", default="", help="comma-separated: sigkill,restart,rpc,disk")
    parser.add_argument("--rpc-faults", default="", help="only RPC faults whose name has this")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="reliability-"))
    outcomes: list[Outcome] = []
    postgres = admin_url()
    for kind in args.databases.split(","):
        if kind == "postgres" and (why := postgres_available(postgres)) is not None:
            print(f"PostgreSQL skipped: {why}", file=sys.stderr)
            continue
        if "sigkill" not in skip and args.kills:
            with fresh_database(kind, workdir, postgres) as url:
                outcomes.append(sigkill(kind, url, args.kills, workdir))
        if kind == "postgres" and "restart" not in skip and args.db_restarts:
            with fresh_database(kind, workdir, postgres) as url:
                outcomes.append(postgres_restarts(url, args.db_restarts, workdir))
        if "rpc" not in skip:
            with fresh_database(kind, workdir, postgres) as url:
                outcomes.extend(rpc_faults(kind, url, args.fault_seconds, workdir, args.rpc_faults))
        print(report(outcomes), flush=True)
    if "disk" not in skip and "sqlite" in args.databases:
        outcomes.append(full_disk(workdir))
    table = report(outcomes)
    print(table)
    (RESULTS / "reliability.json").write_text(
        json.dumps([asdict(o) for o in outcomes], indent=2) + "\n"
    )
    print(f"logs: {workdir}", file=sys.stderr)
    with contextlib.suppress(OSError):
        (RESULTS / "reliability.md").write_text(table + "\n")
    return 0 if all(o.survived and not o.lost and not o.duplicated for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
