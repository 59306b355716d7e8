"""Alembic migrations, run from code (at start-up and by `reconciler migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import InterfaceError, OperationalError

from stellar_reconciler.errors import NothingStoredError, SchemaOutdatedError
from stellar_reconciler.store.database import unavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (the newest by default)."""
    if revision == "head" and current_revision(engine) == head_revision():
        # Nothing to do: skip alembic, whose log lines would only be noise at every start-up.
        return
    try:
        command.upgrade(_config(engine), revision)
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine, exc) from exc


def current_revision(engine: Engine) -> str | None:
    try:
        # Read directly: alembic's MigrationContext logs two info lines per look.
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            value = connection.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar_one_or_none()
            return None if value is None else str(value)
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(engine, exc) from exc


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def require_current(engine: Engine) -> None:
    """For read-only commands: NothingStoredError when the database has no schema,
    SchemaOutdatedError when it needs `reconciler migrate` first. Writes nothing."""
    revision = current_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    if revision is None:
        raise NothingStoredError(
            f"the database {where} has no schema: nothing is stored yet (start the service, "
            "or run `reconciler migrate`)"
        )
    if revision != head_revision():
        raise SchemaOutdatedError(
            f"the database {where} is at schema revision {revision}, this version needs "
            f"{head_revision()}: run `reconciler migrate` first"
        )
