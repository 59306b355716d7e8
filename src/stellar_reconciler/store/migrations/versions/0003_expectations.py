"""Expectations: the application's expected records and what matched them.

Also indexes events by transaction hash, so an expectation posted late finds its event.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index("ix_events_tx_hash", "events", ["tx_hash"])
    op.create_table(
        "expectations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("contract_id", sa.String(56), nullable=False),
        sa.Column("event_name", sa.String(64), nullable=False),
        sa.Column("tx_hash", sa.String(64), nullable=True),
        sa.Column("topics", JsonType, nullable=False),
        sa.Column("amount", sa.String(48), nullable=True),
        sa.Column("tolerance", sa.String(48), nullable=False),
        sa.Column("deadline_ledger", sa.BigInteger, nullable=False),
        sa.Column("deadline_ledgers", sa.Integer, nullable=True),
        sa.Column("match_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("event_id", sa.String(32), nullable=True),
        sa.Column("event_ledger", sa.BigInteger, nullable=True),
        sa.Column("found_amount", sa.String(48), nullable=True),
        sa.Column("difference", sa.String(48), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ux_expectations_external_id", "expectations", ["external_id"], unique=True)
    op.create_index("ux_expectations_event_id", "expectations", ["event_id"], unique=True)
    op.create_index(
        "ix_expectations_pending_key",
        "expectations",
        ["contract_id", "event_name", "match_key"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index(
        "ix_expectations_pending_deadline",
        "expectations",
        ["deadline_ledger"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_expectations_pending_deadline", "expectations")
    op.drop_index("ix_expectations_pending_key", "expectations")
    op.drop_index("ux_expectations_event_id", "expectations")
    op.drop_index("ux_expectations_external_id", "expectations")
    op.drop_table("expectations")
    op.drop_index("ix_events_tx_hash", "events")
