"""The simulated Stellar network: a real JSON-RPC server speaking the Stellar RPC protocol.

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread

net = SimNetwork(SimNetConfig(seed=7, first_ledger=1000, prebuilt_ledgers=200))
with serve_in_thread(net) as url:  # "http://127.0.0.1:<free port>/"
    net.close_ledgers(3)
    net.faults.add(FaultKind.HTTP_503, method="getEvents", times=2)
    ...
    assert stored == net.record_events(1000, net.latest_ledger)
"""

from stellar_reconciler.simnet.config import SimNetConfig, SimNetConfigError
from stellar_reconciler.simnet.faults import (
    FaultBook,
    FaultKind,
    FaultRule,
    events_scan_covers,
    ledgers_page_covers,
    starts_at,
)
from stellar_reconciler.simnet.network import SimNetwork
from stellar_reconciler.simnet.runner import run_simnet, serve_in_thread
from stellar_reconciler.simnet.tamper import LieSchedule

__all__ = [
    "FaultBook",
    "FaultKind",
    "FaultRule",
    "LieSchedule",
    "SimNetConfig",
    "SimNetConfigError",
    "SimNetwork",
    "events_scan_covers",
    "ledgers_page_covers",
    "run_simnet",
    "serve_in_thread",
    "starts_at",
]
