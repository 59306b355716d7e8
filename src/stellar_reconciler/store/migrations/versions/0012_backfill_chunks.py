"""Backfill runs and their chunks; on PostgreSQL, Procrastinate's own schema (the job queue the
chunks run on) when the database does not hold it yet.

Procrastinate's schema is the one of the installed version (procrastinate.schema's SQL file),
applied once; its later migrations, when procrastinate is upgraded, are applied with its own
files (see docs/backfill.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "backfill_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("first_ledger", sa.BigInteger, nullable=False),
        sa.Column("last_ledger", sa.BigInteger, nullable=False),
        sa.Column("chunk_ledgers", sa.Integer, nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_through", sa.BigInteger, nullable=False),
        sa.Column("missing", JsonType, nullable=False),
    )
    op.create_table(
        "backfill_chunks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("first_ledger", sa.BigInteger, nullable=False),
        sa.Column("last_ledger", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("first_previous_hash", sa.String(64), nullable=True),
        sa.Column("last_hash", sa.String(64), nullable=True),
        sa.Column("ledgers_written", sa.Integer, nullable=False),
        sa.Column("events_written", sa.Integer, nullable=False),
        sa.Column("sources", JsonType, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ux_backfill_chunks_run", "backfill_chunks", ["run_id", "first_ledger"], unique=True
    )
    op.create_index("ix_backfill_chunks_state", "backfill_chunks", ["state"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and not sa.inspect(bind).has_table("procrastinate_jobs"):
        from procrastinate.schema import SchemaManager

        # Driver-level, with no parameters: the file's `%` and `:` are SQL, not placeholders.
        cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.drop_index("ix_backfill_chunks_state", table_name="backfill_chunks")
    op.drop_index("ux_backfill_chunks_run", table_name="backfill_chunks")
    op.drop_table("backfill_chunks")
    op.drop_table("backfill_runs")
