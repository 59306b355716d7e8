"""Alembic environment: runs migrations on the engine handed over by store.migrate."""

from __future__ import annotations

from alembic import context

from stellar_reconciler.store.schema import metadata

engine = context.config.attributes["engine"]

# A write transaction (BEGIN IMMEDIATE on SQLite): two processes migrating a new database at
# once then queue on the write lock, and the second finds the schema already at head, instead
# of both reading "empty" and one failing half-way with "database is locked".
with engine.connect().execution_options(write=True) as connection, connection.begin():
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
