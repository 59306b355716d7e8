"""`reconciler proof`: export a ledger range's proof bundle, close a period, verify a bundle.

A typer sub-app of its own, registered by cli.py; its failures read like every command's
(terminal.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stellar_reconciler.config import settings_reference
from stellar_reconciler.errors import ExitCode
from stellar_reconciler.terminal import (
    command_store,
    console,
    err_console,
    fail,
    guarded,
    load_settings,
)

if TYPE_CHECKING:
    from stellar_reconciler.config import Settings
    from stellar_reconciler.store import Store

EXPORT_SETTINGS = ("DATABASE_URL", "CONTRACT_IDS", "EVENT_TOPICS", "UNEXPECTED_EVENT_CONTRACTS")
EXIT_CODES = (
    "\b\nExit codes: 0 done; 1 the bundle does not verify; 2 an option is wrong (a range not "
    "wholly indexed,\nother filters than the database's); 3 the RPC or the database could not "
    "be reached; 4 nothing is stored yet."
)

proof_app = typer.Typer(
    help="Proofs of indexed ledger ranges that anyone can check offline (docs/proofs.md).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

FromLedger = Annotated[int, typer.Option("--from", help="First ledger of the range", min=1)]
ToLedger = Annotated[int, typer.Option("--to", help="Last ledger of the range", min=1)]


@contextmanager
def _opened_store(settings: Settings) -> Iterator[Store]:
    """The service's database as it is (never created or migrated), refusing one indexed
    with other filters than the settings name: the bundle states those settings."""
    from stellar_reconciler.worker import WorkerOptions

    with command_store(settings) as store:
        guarded(lambda: store.check_stream(WorkerOptions.from_settings(settings).fingerprint))
        yield store


def _close(store: Store, first: int, last: int) -> dict[str, Any]:

    period, newly = guarded(lambda: store.periods.close(first, last, "cli"))
    if newly:
        guarded(lambda: store.audit.record("cli", "close_period", f"{first}-{last}", period))
    said = "closed" if newly else "was already closed on " + str(period["closed_at"])
    console.print(
        f"period {first}-{last} {said}: {period['event_count']:,} events, events root "
        f"{period['events_root']}, headers root {period['headers_root']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return period


@proof_app.command(epilog=settings_reference(EXPORT_SETTINGS) + "\n\n" + EXIT_CODES)
def export(
    from_ledger: FromLedger,
    to_ledger: ToLedger,
    output: Annotated[Path, typer.Option(help="File to write the bundle to", dir_okay=False)],
    close: Annotated[
        bool, typer.Option("--close", help="Close the period first, recording its roots")
    ] = False,
) -> None:
    """Write the proof bundle of ledgers --from..--to: the headers' hash chain, the events and
    their Merkle root, the expected records settled in the range, and the settings.

    Every ledger of the range must be stored. Reads only, unless --close.
    """
    from stellar_reconciler import proof

    settings = load_settings()
    if not output.parent.is_dir():
        fail(f"cannot write {output}: the folder {output.parent} does not exist", ExitCode.CONFIG)
    with _opened_store(settings) as store:
        if close:
            _close(store, from_ledger, to_ledger)
        material = guarded(lambda: store.periods.material(from_ledger, to_ledger))
    bundle = proof.assemble(material, proof.settings_part(settings))
    # Written beside the target and renamed: a reader never sees half a bundle.
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(proof.encode(bundle))
    os.replace(partial, output)
    console.print(
        f"wrote {output}: ledgers {from_ledger}-{to_ledger}, {len(material.events):,} events "
        f"(root {bundle['merkle']['events_root']}), {len(material.records):,} settled records",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@proof_app.command("close", epilog=settings_reference(EXPORT_SETTINGS) + "\n\n" + EXIT_CODES)
def close_period(from_ledger: FromLedger, to_ledger: ToLedger) -> None:
    """Close ledgers --from..--to as a period: record the Merkle roots of its events and
    headers. A later repair inside it opens a closed_period_changed discrepancy."""

    with _opened_store(load_settings()) as store:
        _close(store, from_ledger, to_ledger)


@proof_app.command(epilog=EXIT_CODES)
def verify(
    bundle: Annotated[
        Path,
        typer.Argument(help="The bundle file", exists=True, dir_okay=False, readable=True),
    ],
    rpc: Annotated[
        str | None,
        typer.Option(help="Also compare the headers with this Stellar RPC (getLedgers)"),
    ] = None,
) -> None:
    """Check a proof bundle offline: the hash chain links, every event recomputes to the
    Merkle root, every verdict refers to an event of the bundle, no byte changed. Needs
    no database and no settings."""
    from stellar_reconciler import proof

    data = bundle.read_bytes()
    problems = proof.check(data)
    if not problems and rpc is not None:
        problems = guarded(lambda: asyncio.run(_check_network(data, rpc)))
    if problems:
        for part, message in problems:
            err_console.print(f"{part}: {message}", markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"error: {bundle} does not verify", markup=False, highlight=False)
        raise typer.Exit(ExitCode.FAILED)
    summary = proof.summary(data)
    against = f"; its headers match the network at {rpc}" if rpc else ""
    console.print(
        f"{bundle} verifies: {summary}{against}", markup=False, highlight=False, soft_wrap=True
    )


async def _check_network(data: bytes, url: str) -> list[tuple[str, str]]:
    from stellar_reconciler import proof
    from stellar_reconciler.rpc import StellarRpc, new_http_client

    rpc = StellarRpc(new_http_client(30.0, "stellar-reconciler/proof"), url)
    try:
        return await proof.check_network(data, rpc)
    finally:
        await rpc.aclose()
