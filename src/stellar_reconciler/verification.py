"""Verification: `reconciler verify`, gaps and re-verification of stored ledgers, run once.

It uses the service's own core and maintenance (wiring.Core), over a database that must
already exist, without the worker, the HTTP server or leadership, and with no batch hooks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stellar_reconciler.config import TESTNET_PASSPHRASE, Settings, redact_url
from stellar_reconciler.control import Controls
from stellar_reconciler.crosscheck import Against, require_lake
from stellar_reconciler.errors import NetworkMismatchError, NothingStoredError, SetupError
from stellar_reconciler.store import Store
from stellar_reconciler.wiring import Core, standard_hooks


async def run_verification(
    settings: Settings, first: int | None, last: int | None, against: Against = "rpc"
) -> dict[str, Any]:
    """`reconciler verify`: gaps, then re-verification of first..last (default: all stored)
    against the RPC, the lake (LAKE_URL) or both.

    Never creates or migrates a database; refuses an RPC or a lake of another network than the
    one the stored data came from, before asking it anything else. Against the lake alone the
    RPC is not asked at all (and gaps are not filled).
    """
    require_lake(against, bool(settings.lake_url))
    store = await asyncio.to_thread(Store.open_existing, settings.sqlalchemy_url)
    # Events its repairs add are queued like the running service's; that one sends them.
    core = Core.of(settings, store)
    try:
        if against == "lake":
            first, last = _within(*await _stored_bounds(store), first, last)
            maintenance = core.maintenance(Controls(core.status))
            return (await maintenance.verify(first, last, against="lake")).as_json()
        return await _verify(core, first, last, against)
    finally:
        await core.rpc.aclose()
        store.close()


async def _verify(
    core: Core, first: int | None, last: int | None, against: Against
) -> dict[str, Any]:
    settings, store, rpc = core.settings, core.store, core.rpc
    rpc_url = redact_url(settings.stellar_rpc_url)
    low, high = await _stored_bounds(store)
    recorded = await asyncio.to_thread(store.network.passphrase)
    if (
        recorded is not None
        and recorded != TESTNET_PASSPHRASE
        and "stellar_rpc_url" not in settings.model_fields_set
    ):
        # The default RPC is testnet's: no need to ask it to know it is the wrong one.
        raise NetworkMismatchError(recorded, TESTNET_PASSPHRASE, rpc_url)
    network = await rpc.get_network()
    await asyncio.to_thread(store.network.check, network.passphrase, rpc_url)
    first, last = _within(low, high, first, last)
    # Its repairs settle expected records on the events they add, as the service's do.
    maintenance = core.maintenance(Controls(core.status), standard_hooks(settings, store))
    tip = await rpc.get_health()
    report = await maintenance.gaps.repair(tip, first, last)
    report = await maintenance.verify(first, last, report=report, against=against)
    report.first_ledger, report.last_ledger = first, last
    return report.as_json()


async def _stored_bounds(store: Store) -> tuple[int, int]:
    """The first and last stored ledgers; NothingStoredError when there are none."""
    low, high, count = await asyncio.to_thread(store.ledger_bounds)
    if not count or low is None or high is None:
        raise NothingStoredError("nothing is stored yet: there is nothing to verify")
    return low, high


def _within(low: int, high: int, first: int | None, last: int | None) -> tuple[int, int]:
    """--from/--to narrowed to the stored low..high (all of it when not given)."""
    first = low if first is None else max(first, low)
    last = high if last is None else min(last, high)
    if first > last:
        raise SetupError(f"--from/--to select no stored ledger (stored: {low}-{high})")
    return first, last
