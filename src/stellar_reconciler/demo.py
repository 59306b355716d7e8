"""`reconciler demo`: the simulated network and the service side by side, in one process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from stellar_reconciler.config import Settings
from stellar_reconciler.demo_records import load_demo_records
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import LieSchedule, SimNetConfig, SimNetwork, run_simnet
from stellar_reconciler.stopping import install_signal_handlers

# The network's lies, in seconds after start: one, another, then one a minute. Spaced out so
# a person watching sees each one found and repaired, rather than all in the first seconds.
FIRST_LIE_SECS = 30
SECOND_LIE_SECS = 60
LIE_EVERY_SECS = 60
# Re-verify every few ledgers (64 in production), so a lie is found seconds after it is told.
DEMO_VERIFY_EVERY_LEDGERS = 5
# The token contract is upgraded this many ledgers before the end of the history (at most
# half of it): from then on its transfers carry the amount as decimal text, so the records
# have an event whose amount cannot be read (one settles amount_unreadable).
UPGRADED_LEDGERS = 100


def demo_network_config(
    history: int, ledger_interval: float | None, events_per_ledger: int
) -> SimNetConfig:
    """The demo's simulated network: `history` ledgers at start, the token contract upgraded
    near their end (see UPGRADED_LEDGERS)."""
    first_ledger = 1_000_000
    return SimNetConfig(
        seed=2026,
        first_ledger=first_ledger,
        prebuilt_ledgers=history,
        ledger_interval=ledger_interval,
        events_per_ledger=events_per_ledger,
        upgrade_ledger=first_ledger + history - min(UPGRADED_LEDGERS, history // 2),
        upgrade_shape="string",
    )


def demo_settings(settings: Settings, net: SimNetwork, rpc_url: str) -> Settings:
    """The service's settings in the demo: following `net` at `rpc_url`, re-verifying every
    few ledgers, and indexing the network's three contracts by name. Named in CONTRACT_IDS
    (which lets through every event the network has), their events' shapes are watched from
    the first ledger, so the token's upgrade opens a shape_changed during the catch-up."""
    contracts = (net.token_contract_id, net.escrow_contract_id, net.native_contract_id)
    return settings.model_copy(
        update={
            "stellar_rpc_url": rpc_url,
            "verify_every_ledgers": DEMO_VERIFY_EVERY_LEDGERS,
            "contract_ids": contracts,
        }
    )


def lie_schedule(start: int, ledger_interval: float) -> LieSchedule:
    """The demo's lies from ledger `start` on, as ledger counts at `ledger_interval` seconds."""

    def ledgers(seconds: float) -> int:
        return max(1, round(seconds / ledger_interval))

    first = ledgers(FIRST_LIE_SECS)
    return LieSchedule(
        start=start,
        first_after=first,
        second_after=max(first + 1, ledgers(SECOND_LIE_SECS)),
        every=ledgers(LIE_EVERY_SECS),
    )


async def run_demo(
    settings: Settings,
    listener: socket.socket,
    ledger_interval: float,
    history: int,
    events_per_ledger: int,
    say: Callable[[str], Any],
) -> None:
    """Serve a simulated network on a free loopback port and run the service against it until
    Ctrl-C; the service serves on `listener` (bound by the caller, who words a port in use)."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    net = SimNetwork(demo_network_config(history, ledger_interval, events_per_ledger))
    # Something for reconciliation to find: an event left out of its first answer, then one
    # served with another amount on a second read, and so on. Re-verification repairs each.
    net.schedule_lies(lie_schedule(net.latest_ledger, ledger_interval))
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    async with asyncio.TaskGroup() as group:
        group.create_task(
            run_simnet(net, port=0, stop_event=stop, log_level="warning", on_ready=ready.set_result)
        )
        rpc_url = await ready
        service = Service.build(demo_settings(settings, net, rpc_url))
        service.listener = listener
        group.create_task(service.run(stop))
        await service.server.listening.wait()
        base = f"http://{settings.bind_host}:{service.bound_port()}"
        say(f"Simulated Stellar network: {rpc_url} (a ledger every {ledger_interval:g}s)")
        say(f"Token contract {net.token_contract_id}, escrow contract {net.escrow_contract_id}")
        say(
            f"The network lies {FIRST_LIE_SECS}s and {SECOND_LIE_SECS}s from now, then every "
            f"{LIE_EVERY_SECS}s: watch 'Recently resolved' on the dashboard."
        )
        where = [
            f"stellar-reconciler: {base}/  (health {base}/health, API docs {base}/docs)",
            f"Admin token for the dashboard's actions: {settings.admin_token}",
            "Press Ctrl-C to stop.",
        ]
        for line in where:
            say(line)
        # The catch-up's log lines push the address off the screen: say it again after them.
        if await caught_up(service, stop):
            say("Caught up with the simulated network.")
            checkpoint = service.status.last_processed_ledger or net.latest_ledger
            book = await asyncio.to_thread(load_demo_records, net, service.store, checkpoint)
            say(
                f"Posted {len(book.specs)} expected records, one or more of each status: "
                "see Reconciliation on the dashboard, each with its explanation."
            )
            for line in where:
                say(line)


async def caught_up(service: Service, stop: asyncio.Event) -> bool:
    """Wait until the service first reports synced; False when stopped before."""
    status = service.status
    version = status.version
    while not stop.is_set():
        if status.state()[0] == "synced":
            return True
        version = await status.wait_changed(version, 1.0)
    return False
