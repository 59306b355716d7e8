"""`reconciler demo`: the simulated network and the service side by side, in one process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from stellar_reconciler.config import Settings
from stellar_reconciler.service import Service, install_signal_handlers
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, run_simnet


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
    net = SimNetwork(
        SimNetConfig(
            seed=2026,
            first_ledger=1_000_000,
            prebuilt_ledgers=history,
            ledger_interval=ledger_interval,
            events_per_ledger=events_per_ledger,
        )
    )
    # Something for reconciliation to find: one event left out of its first answer and one
    # served with another amount on a second read. Re-verification repairs both.
    tampered = net.first_ledger + max(history - 150, 0)
    for offset in range(20):
        events = net.ledger_events(tampered + offset)
        if events is not None and len(events) >= 2:
            net.drop_event_at(tampered + offset, 0)
            net.alter_event(net.event_id_at(tampered + offset, 1))
            break
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    async with asyncio.TaskGroup() as group:
        group.create_task(
            run_simnet(net, port=0, stop_event=stop, log_level="warning", on_ready=ready.set_result)
        )
        rpc_url = await ready
        service = Service.build(settings.model_copy(update={"stellar_rpc_url": rpc_url}))
        service.listener = listener
        group.create_task(service.run(stop))
        await service.server.listening.wait()
        base = f"http://{settings.bind_host}:{service.bound_port()}"
        say(f"Simulated Stellar network: {rpc_url} (a ledger every {ledger_interval:g}s)")
        say(f"stellar-reconciler: {base}/  (health {base}/health, API docs {base}/docs)")
        say(f"Token contract {net.token_contract_id}, escrow contract {net.escrow_contract_id}")
        say(f"Admin token for the dashboard's actions: {settings.admin_token}")
        say("Press Ctrl-C to stop.")
