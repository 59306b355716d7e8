"""The `reconciler` command line: run, demo, migrate, status, simnet and operator commands."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from stellar_reconciler.config import Settings
from stellar_reconciler.errors import ConfigError, ReconcilerError
from stellar_reconciler.logs import configure_logging_for
from stellar_reconciler.simnet.cli import simnet_command

app = typer.Typer(
    help="Index Soroban contract events from Stellar RPC exactly once, and reconcile them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_FAILURE = 1
# An operator action the database's state does not allow (e.g. a gap consent with no gap).
EXIT_REFUSED = 3


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a bad value exits 2 with one line naming it."""
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def guarded(action: Callable[[], T]) -> T:
    """Run an action, turning our own errors into one readable line instead of a traceback."""
    try:
        return action()
    except ReconcilerError as exc:
        fail(str(exc))


@app.command()
def run() -> None:
    """Run the service: follow the network, index events, serve /health, /metrics and the API."""
    from stellar_reconciler.service import run_service

    settings = load_settings()
    configure_logging_for(settings)
    guarded(lambda: asyncio.run(run_service(settings)))


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the service (dashboard and API)")] = 3000,
    ledger_interval: Annotated[
        float, typer.Option(help="Seconds between ledgers on the simulated network", min=0.2)
    ] = 2.0,
    history: Annotated[
        int, typer.Option(help="Ledgers of history to catch up first", min=1)
    ] = 2000,
    events_per_ledger: Annotated[int, typer.Option(help="Mean events per ledger", min=0)] = 20,
    database_url: Annotated[
        str | None, typer.Option(help="Database; default a fresh SQLite file in a temp folder")
    ] = None,
) -> None:
    """Run a simulated Stellar network and the service against it, on SQLite; print the URL."""
    import secrets
    import tempfile

    from stellar_reconciler.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="reconciler-demo-") as folder:
        settings = load_settings(
            database_url=database_url or f"sqlite:///{folder}/demo.db",
            bind_addr=f"127.0.0.1:{port}",
            start_ledger="oldest",
            # The demo's actions need a token; a fresh one each run unless ADMIN_TOKEN is set.
            admin_token=os.environ.get("ADMIN_TOKEN") or secrets.token_urlsafe(18),
            # The simulated network does not exist yet; run_demo points the service at it.
            stellar_rpc_url="http://127.0.0.1:1/",
        )
        configure_logging_for(settings)
        guarded(
            lambda: asyncio.run(
                run_demo(
                    settings,
                    ledger_interval,
                    history,
                    events_per_ledger,
                    lambda line: console.print(line, soft_wrap=True, highlight=False),
                )
            )
        )


expect_app = typer.Typer(help="The application's expected records.", no_args_is_help=True)
app.add_typer(expect_app, name="expect")


@expect_app.command("import")
def expect_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV file: a header row naming the columns, then one record per row",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
) -> None:
    """Import expected records from CSV, all or nothing; bad rows are listed by line.

    Columns (header row, any order): external_id, contract_id, event_name (required);
    deadline_ledger or deadline_ledgers (one of them); amount, tolerance, tx_hash, from, to,
    topic1, topic2, topic3 (optional). Importing the same file again changes nothing.
    """
    from stellar_reconciler.expectations_csv import import_csv
    from stellar_reconciler.store import Store

    settings = load_settings()
    store = Store.open(settings.sqlalchemy_url)
    try:
        guarded(store.migrate)
        report = guarded(lambda: import_csv(file, store))
    finally:
        store.close()
    if not report.ok:
        for error in report.errors[:50]:
            err_console.print(str(error), markup=False, highlight=False, soft_wrap=True)
        if len(report.errors) > 50:
            err_console.print(f"... and {len(report.errors) - 50} more", markup=False)
        fail(f"nothing imported: {len(report.errors)} problem(s) in {file}")
    console.print(
        f"imported {report.created:,} expected records from {file} "
        f"({report.existing:,} were already there)",
        markup=False,
        highlight=False,
    )


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema, then exit."""
    from stellar_reconciler.store import Store
    from stellar_reconciler.store.migrate import current_revision

    settings = load_settings()
    store = Store.open(settings.sqlalchemy_url)
    try:
        guarded(store.migrate)
        console.print(f"database schema at revision {current_revision(store.engine)}")
    finally:
        store.close()


@app.command()
def status(
    url: Annotated[str | None, typer.Option(help="Service URL; default http://BIND_ADDR")] = None,
) -> None:
    """Show the running service's health, or the database's checkpoint when it is not running."""
    settings = load_settings()
    base = url or f"http://{settings.bind_addr}"
    try:
        body = httpx.get(f"{base.rstrip('/')}/api/status", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        body = None
    table = Table(title=f"stellar-reconciler at {base}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    if body is None:
        from stellar_reconciler.store import Store

        store = Store.open(settings.sqlalchemy_url)
        try:
            checkpoint = guarded(store.checkpoint)
            first, last, count = guarded(store.ledger_bounds)
        finally:
            store.close()
        table.add_row("service", "[red]not reachable[/red]")
        table.add_row("checkpoint", str(checkpoint.ledger))
        table.add_row("stored ledgers", f"{count:,} ({first}-{last})" if count else "none")
        console.print(table)
        raise typer.Exit(EXIT_FAILURE)
    colour = "green" if body.get("healthy") else "red"
    table.add_row("status", f"[{colour}]{body.get('status')}[/{colour}]")
    for key in (
        "reason",
        "last_processed_ledger",
        "latest_ledger",
        "ledger_lag",
        "last_success_at",
        "last_error",
        "network_passphrase",
        "protocol_version",
        "uptime_seconds",
    ):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        table.add_row(key.replace("_", " "), "-" if value is None else str(value))
    console.print(table)


@app.command("acknowledge-gap")
def acknowledge_gap(
    through: Annotated[
        int | None,
        typer.Option(help="Accept ledgers up to this one as lost", min=1, max=2**32 - 1),
    ] = None,
    through_oldest: Annotated[
        bool,
        typer.Option(
            "--through-oldest",
            help="Accept whatever the RPC's retention window has lost when the worker resumes",
        ),
    ] = False,
    note: Annotated[str, typer.Option(help="Why, for the record")] = "outside RPC retention",
) -> None:
    """Consent to lose the retention gap the worker is stopped at (see /health). The worker
    carries it out at its next poll and records the exact range; nothing else is ever
    skipped. Exit code 3 when there is no such gap, or it already has a consent."""
    from stellar_reconciler.errors import GapConsentRefusedError
    from stellar_reconciler.store import Store

    if (through is None) == (not through_oldest):
        fail("give exactly one of --through N or --through-oldest", EXIT_CONFIG)
    settings = load_settings()
    store = Store.open(settings.sqlalchemy_url)
    try:
        guarded(store.migrate)
        try:
            consent = store.consents.give(through, note, "cli")
        except GapConsentRefusedError as exc:
            fail(f"refused: {exc}", EXIT_REFUSED)
        except ReconcilerError as exc:
            fail(str(exc))
        console.print(f"recorded consent {consent['id']}: {consent['covers']}", highlight=False)
    finally:
        store.close()


@app.command()
def verify(
    from_ledger: Annotated[int | None, typer.Option("--from", help="First ledger", min=1)] = None,
    to_ledger: Annotated[int | None, typer.Option("--to", help="Last ledger", min=1)] = None,
) -> None:
    """Find gaps (and fill those the RPC still has), then re-verify stored ledgers against the
    RPC and repair differences. Exit code 1 when something could not be repaired."""
    from stellar_reconciler.service import run_verification

    settings = load_settings()
    configure_logging_for(settings, level="warning")
    report = guarded(lambda: asyncio.run(run_verification(settings, from_ledger, to_ledger)))
    table = Table(title="verification", show_header=False)
    for key, value in report.items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    if not report["clean"]:
        raise typer.Exit(EXIT_FAILURE)


app.command("simnet", help="Run the simulated Stellar network (a real JSON-RPC server).")(
    simnet_command
)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
