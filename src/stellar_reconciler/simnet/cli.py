"""`reconciler simnet`: run the simulated Stellar network from the command line.

Wire it into the main typer app with `app.command("simnet")(simnet_command)`; it also runs
alone as `python -m stellar_reconciler.simnet`.

Faults use `--fault METHOD:KIND[=VALUE][:COUNT]`, repeatable. METHOD is a JSON-RPC method or
`*` for any; KIND is a FaultKind value (http_500, http_502, http_503, http_504, http_429,
rpc_error, slow, drop, non_json, truncated, wrong_shape) or a bare status code (503); VALUE is
the JSON-RPC code for rpc_error, the seconds for slow, the Retry-After for http_429; COUNT is
how many requests it hits (default 1) or `*` until the process ends. Examples:
`--fault getEvents:http_503:2`, `--fault '*:rpc_error=-32001:*'`, `--fault getLedgers:slow=3`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from obstore.store import LocalStore

from stellar_reconciler.simnet.config import (
    DEFAULT_PASSPHRASE,
    DEFAULT_RETENTION_WINDOW,
    UPGRADE_SHAPES,
    SimNetConfig,
    SimNetConfigError,
)
from stellar_reconciler.simnet.faults import HTTP_STATUS, FaultKind
from stellar_reconciler.simnet.lake import publish
from stellar_reconciler.simnet.network import SimNetwork
from stellar_reconciler.simnet.runner import run_simnet

_BY_STATUS = {str(status): kind for kind, status in HTTP_STATUS.items()}


class FaultSpecError(ValueError):
    """A --fault value that does not read as METHOD:KIND[=VALUE][:COUNT]."""


def parse_fault(spec: str) -> dict[str, Any]:
    """FaultBook.add keyword arguments for one `--fault` value."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise FaultSpecError(f"--fault {spec!r}: expected METHOD:KIND[=VALUE][:COUNT]")
    method, kind_text = parts[0], parts[1]
    name, _, value = kind_text.partition("=")
    try:
        kind = _BY_STATUS.get(name) or FaultKind(name)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise FaultSpecError(f"--fault {spec!r}: unknown kind {name!r} (one of {known})") from None
    args: dict[str, Any] = {"kind": kind, "method": None if method in ("*", "any") else method}
    try:
        if value and kind is FaultKind.RPC_ERROR:
            args["code"] = int(value)
        elif value and kind is FaultKind.SLOW:
            args["delay"] = float(value)
        elif value and kind is FaultKind.HTTP_429:
            args["retry_after"] = value
        elif value:
            raise FaultSpecError(f"--fault {spec!r}: {kind.value} takes no value")
        if len(parts) == 3:
            args["times"] = None if parts[2] in ("*", "inf") else int(parts[2])
    except ValueError as exc:
        if isinstance(exc, FaultSpecError):
            raise
        raise FaultSpecError(f"--fault {spec!r}: {exc}") from None
    if args.get("times", 1) is not None and args.get("times", 1) < 1:
        raise FaultSpecError(f"--fault {spec!r}: COUNT must be at least 1 or *")
    return args


def simnet_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8000,
    first_ledger: Annotated[int, typer.Option(help="Sequence of the first ledger.")] = 1000,
    prebuilt: Annotated[int, typer.Option(help="Ledgers of history built at start.")] = 200,
    ledger_interval: Annotated[
        float, typer.Option(help="Seconds between ledger closes; 0 closes only on request.")
    ] = 5.0,
    events_per_ledger: Annotated[
        int, typer.Option(help="Mean events in a ledger that carries events.")
    ] = 5,
    event_every: Annotated[
        int, typer.Option(help="Only every Nth ledger (by offset from the first) has events.")
    ] = 1,
    retention_window: Annotated[
        int, typer.Option(help="Ledgers the node keeps (older ones are forgotten).")
    ] = DEFAULT_RETENTION_WINDOW,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same chain.")] = 7,
    meta_padding_bytes: Annotated[
        int, typer.Option(help="Pad each LedgerCloseMeta by about this many bytes.")
    ] = 0,
    passphrase: Annotated[str, typer.Option(help="Network passphrase.")] = DEFAULT_PASSPHRASE,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="METHOD:KIND[=VALUE][:COUNT], repeatable (see module docs)."),
    ] = None,
    upgrade_ledger: Annotated[
        int | None,
        typer.Option(
            help="From this ledger on, token transfers carry another value shape (a "
            "contract upgrade): see --upgrade-shape."
        ),
    ] = None,
    upgrade_shape: Annotated[
        str,
        typer.Option(
            help=f"The value shape after --upgrade-ledger: {', '.join(UPGRADE_SHAPES)} (map: "
            "{amount: i128}; string: decimal text like 12.5000000; renamed: {value: i128})."
        ),
    ] = "map",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    lake_dir: Annotated[
        Path | None,
        typer.Option(
            help="Also publish the prebuilt history as a SEP-54 lake in this directory "
            "(before serving; ledgers closed later are not added)."
        ),
    ] = None,
) -> None:
    """Run a simulated Stellar RPC node (JSON-RPC at /, control API at /_simnet/)."""
    try:
        config = SimNetConfig(
            seed=seed,
            first_ledger=first_ledger,
            prebuilt_ledgers=prebuilt,
            ledger_interval=ledger_interval or None,
            events_per_ledger=events_per_ledger,
            event_every=event_every,
            retention_window=retention_window,
            meta_padding_bytes=meta_padding_bytes,
            network_passphrase=passphrase,
            upgrade_ledger=upgrade_ledger,
            upgrade_shape=upgrade_shape,
        )
        rules = [parse_fault(spec) for spec in fault or []]
    except (SimNetConfigError, FaultSpecError) as exc:
        raise typer.BadParameter(str(exc)) from None
    net = SimNetwork(config)
    for rule in rules:
        net.faults.add(**rule)
    if lake_dir is not None:
        lake_dir.mkdir(parents=True, exist_ok=True)
        publish(net, LocalStore(str(lake_dir)), net.first_ledger, net.latest_ledger)
    asyncio.run(run_simnet(net, host, port, log_level=log_level))


def main() -> None:
    """Entry point of `python -m stellar_reconciler.simnet`."""
    typer.run(simnet_command)
