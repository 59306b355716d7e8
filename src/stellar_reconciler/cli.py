"""The `reconciler` command line: run, demo, migrate, status, simnet and operator commands."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.table import Table

from stellar_reconciler import __version__
from stellar_reconciler.config import Settings, settings_reference
from stellar_reconciler.errors import ExitCode, ReconcilerError
from stellar_reconciler.logs import configure_logging_for
from stellar_reconciler.proof_cli import proof_app
from stellar_reconciler.simnet.cli import simnet_command
from stellar_reconciler.terminal import (
    command_store,
    console,
    err_console,
    fail,
    guarded,
    human,
    load_settings,
    warn,
)

if TYPE_CHECKING:
    pass

# Plain help (no rich boxes): click rewraps docstrings as paragraphs, so help is never broken
# mid-sentence, and flags show no "<bool>" placeholder.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
app = typer.Typer(
    help="Index Soroban contract events from Stellar RPC exactly once, and reconcile them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
)

# Settings each command reads, for its --help (their descriptions come from config.py).
RUN_SETTINGS = tuple(name.upper() for name in Settings.model_fields)
VERIFY_SETTINGS = (
    "DATABASE_URL",
    "STELLAR_RPC_URL",
    "CONTRACT_IDS",
    "EVENT_TOPICS",
    "RPC_MAX_ATTEMPTS",
    "RPC_INITIAL_BACKOFF_MS",
    "RPC_MAX_BACKOFF_SECS",
    "RPC_TIMEOUT_SECS",
    "VERIFY_EVERY_LEDGERS",
    "UNEXPECTED_EVENT_CONTRACTS",
    "LAKE_URL",
    "LAKE_ENDPOINT_URL",
    "LAKE_ANONYMOUS",
    "LAKE_PREFETCH",
)
EXIT_CODES_HELP = (
    "\b\nExit codes: 0 done; 1 something could not be repaired or was rejected; 2 a setting "
    "or option is wrong\n(or conflicts with what the database holds); 3 the RPC or the database "
    "could not be reached;\n4 nothing is stored yet."
)


def _version(show: bool) -> None:
    if show:
        console.print(f"stellar-reconciler {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Index Soroban contract events from Stellar RPC exactly once, and reconcile them."""


@app.command(epilog=settings_reference(RUN_SETTINGS) + "\n\n" + EXIT_CODES_HELP)
def run() -> None:
    """Run the service: follow the network, index events, serve /health, /metrics and the API.

    Settings come from the environment or a .env file in the working directory.
    """
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
    from stellar_reconciler.startup import open_listener

    # Before anything else, so a port in use is one line with the demo's own advice.
    listener = guarded(lambda: open_listener("127.0.0.1", port, "choose another port with --port"))

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
                    listener,
                    ledger_interval,
                    history,
                    events_per_ledger,
                    lambda line: console.print(line, soft_wrap=True, highlight=False),
                )
            )
        )


expect_app = typer.Typer(
    help="The application's expected records.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(expect_app, name="expect")
app.add_typer(proof_app, name="proof")


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

    with command_store(load_settings(), migrate=True) as store:
        report = guarded(lambda: import_csv(file, store))
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
    """Create or upgrade the database schema, then exit.

    Refuses (exit code 2) a database filled with other CONTRACT_IDS/EVENT_TOPICS, as `run` does.
    """
    from stellar_reconciler.startup import migrate_database

    settings = load_settings()
    revision = guarded(lambda: migrate_database(settings))
    console.print(f"database schema at revision {revision}")


@app.command()
def status(
    url: Annotated[str | None, typer.Option(help="Service URL; default http://BIND_ADDR")] = None,
) -> None:
    """Show the running service's health, or the database's checkpoint when it is not running.

    Reads only: it never creates or migrates a database. Exit code 3 when the service is not
    reachable, 4 when there is no database either.
    """
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
        with command_store(settings) as store:
            checkpoint = guarded(store.checkpoint)
            first, last, count = guarded(store.ledger_bounds)
            passphrase = guarded(store.network.passphrase)
        table.add_row("service", "[red]not reachable[/red]")
        table.add_row("network", human(passphrase))
        table.add_row("checkpoint", human(checkpoint.ledger))
        table.add_row("stored ledgers", f"{count:,} ({first}-{last})" if count else "none")
        console.print(table)
        raise typer.Exit(ExitCode.UNAVAILABLE)
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
        table.add_row(key.replace("_", " "), human(body.get(key)))
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
    skipped. Exit code 1 when there is no such gap, or it already has a consent."""
    from stellar_reconciler.errors import GapConsentRefusedError

    if (through is None) == (not through_oldest):
        fail("give exactly one of --through N or --through-oldest", ExitCode.CONFIG)
    with command_store(load_settings(), migrate=True) as store:
        try:
            consent = store.consents.give(through, note, "cli")
        except GapConsentRefusedError as exc:
            fail(f"refused: {exc}", ExitCode.FAILED)
        except ReconcilerError as exc:
            fail(str(exc))
        console.print(f"recorded consent {consent['id']}: {consent['covers']}", highlight=False)


@app.command(epilog=settings_reference(VERIFY_SETTINGS) + "\n\n" + EXIT_CODES_HELP)
def verify(
    from_ledger: Annotated[int | None, typer.Option("--from", help="First ledger", min=1)] = None,
    to_ledger: Annotated[int | None, typer.Option("--to", help="Last ledger", min=1)] = None,
    against: Annotated[
        str,
        typer.Option(
            help="rpc, lake (LAKE_URL) or both: the sources stored ledgers are compared with"
        ),
    ] = "rpc",
) -> None:
    """Find gaps (and fill those the RPC still has), then re-verify stored ledgers against the
    RPC and repair differences.

    With --against both, the lake votes too: a source outvoted by the other two is named in a
    source_mismatch and nothing is repaired from it. --against lake compares the store with
    the lake alone, without asking the RPC. It never creates a database; it refuses an RPC or
    a lake of another network than the stored data's, and names the lake object it could not
    read.
    """
    from stellar_reconciler.config import redact_url
    from stellar_reconciler.crosscheck import AGAINST
    from stellar_reconciler.verification import run_verification

    settings = load_settings()
    configure_logging_for(settings, level="warning")
    # Checked here, not by click: the installed typer has no choice type for a plain str.
    chosen = next((a for a in AGAINST if a == against), None)
    if chosen is None:
        fail(f"--against must be rpc, lake or both, not {against!r}", ExitCode.CONFIG)
    if chosen != "lake" and "stellar_rpc_url" not in settings.model_fields_set:
        warn(
            f"STELLAR_RPC_URL is not set: asking {redact_url(settings.stellar_rpc_url)} "
            "(the default, testnet)"
        )
    report = guarded(
        lambda: asyncio.run(run_verification(settings, from_ledger, to_ledger, chosen))
    )
    table = Table(title="verification", show_header=False)
    for key, value in report.items():
        if key == "source_mismatches":
            # One ledger each: "ledger=12, source=lake, changed=1; ledger=40, ..."
            shown = "; ".join(human(v) for v in value) or "none"
            table.add_row(key.replace("_", " "), shown)
            continue
        table.add_row(key.replace("_", " "), human(value))
    console.print(table)
    if not report["clean"]:
        raise typer.Exit(ExitCode.FAILED)


BACKFILL_SETTINGS = (
    *VERIFY_SETTINGS[:-2],
    "BATCH_MAX_LEDGERS",
    "LAKE_URL",
    "LAKE_ENDPOINT_URL",
    "LAKE_ANONYMOUS",
    "LAKE_PREFETCH",
    "BACKFILL_CHUNK_LEDGERS",
    "BACKFILL_STALLED_SECS",
)


@app.command(epilog=settings_reference(BACKFILL_SETTINGS) + "\n\n" + EXIT_CODES_HELP)
def backfill(
    from_ledger: Annotated[int, typer.Option("--from", help="First ledger", min=1)],
    to_ledger: Annotated[int, typer.Option("--to", help="Last ledger", min=1)],
    queue_only: Annotated[
        bool,
        typer.Option(
            "--queue-only",
            help="PostgreSQL: queue the chunks and wait for backfill-workers, writing none here",
        ),
    ] = False,
) -> None:
    """Fill the ledgers missing from the database between --from and --to, of any age: from
    the data lake (LAKE_URL) where the RPC no longer keeps them, from the RPC where it does.

    Ledgers already stored are skipped, never rewritten, so it may be run again at any time and
    resumes where it stopped. Only ledgers up to the worker's checkpoint are written (after it
    they are the worker's). The range is cut into chunks of BACKFILL_CHUNK_LEDGERS, each written
    in one transaction and chained by hash to the stored ledgers on both sides; one that does
    not chain, or whose lake object is missing or corrupt, is not written, and the command
    exits 1 naming the ledger or the object. On PostgreSQL the chunks are jobs of a queue that
    this command and any number of `reconciler backfill-worker` processes share; on SQLite this
    command writes them itself, in order.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from stellar_reconciler.backfill_chunks import run_backfill

    settings = load_settings()
    configure_logging_for(settings, level="warning")
    columns = (
        TextColumn("backfill {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ledgers"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"{from_ledger}-{to_ledger}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = guarded(
            lambda: asyncio.run(
                run_backfill(settings, from_ledger, to_ledger, advance, not queue_only)
            )
        )
    table = Table(title="backfill", show_header=False)
    for key, value in report.items():
        table.add_row(key.replace("_", " "), human(value))
    console.print(table)


@app.command(
    "backfill-worker",
    epilog=settings_reference(BACKFILL_SETTINGS) + "\n\n" + EXIT_CODES_HELP,
)
def backfill_worker() -> None:
    """Take backfill chunks from the queue in the PostgreSQL database (DATABASE_URL) and write
    them, one transaction each, until SIGINT or SIGTERM. Run as many as wanted, on any hosts.

    A worker that dies mid-chunk loses nothing: its chunk was not committed, and once its
    heartbeat is BACKFILL_STALLED_SECS old another worker runs the chunk again.
    """
    from stellar_reconciler.backfill_chunks import run_backfill_worker

    settings = load_settings()
    configure_logging_for(settings)
    guarded(lambda: asyncio.run(run_backfill_worker(settings)))


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
