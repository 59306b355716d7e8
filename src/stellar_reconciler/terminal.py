"""What every command shares: the consoles, one-line failures with the exit code the error
names, the settings and the database as a command opens them, values as a table shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from stellar_reconciler.config import Settings, env_file_warnings
from stellar_reconciler.errors import ConfigError, ExitCode, ReconcilerError

if TYPE_CHECKING:
    from stellar_reconciler.store import Store

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = ExitCode.FAILED) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a bad value exits 2 with one line naming it."""
    for message in env_file_warnings():
        warn(message)
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG)


def guarded(action: Callable[[], T]) -> T:
    """Run an action, turning our own errors into one readable line (and the exit code the
    error's class names) instead of a traceback."""
    try:
        return action()
    except ReconcilerError as exc:
        fail(str(exc), exc.exit_code)


@contextmanager
def command_store(settings: Settings, *, migrate: bool = False) -> Iterator[Store]:
    """The service's database for one command, closed when the command is done: migrated
    first with `migrate`, else as it is (never created or migrated; exit 4 when missing)."""
    from stellar_reconciler.store import Store

    url = settings.sqlalchemy_url
    store = guarded(lambda: Store.open(url) if migrate else Store.open_existing(url))
    try:
        if migrate:
            guarded(store.migrate)
        yield store
    finally:
        store.close()


def human(value: Any) -> str:
    """A value as a person reads it in a table: no `[]`, `True` or `None`."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        if not value:
            return "none"
        if all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
            return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in value)
        return ", ".join(human(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={human(v)}" for k, v in value.items()) or "none"
    return str(value)
