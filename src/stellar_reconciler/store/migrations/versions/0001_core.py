"""Core schema: checkpoints, ledgers, events, acknowledged gaps.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("ledger", sa.BigInteger, nullable=False),
        sa.Column("filter_fingerprint", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledgers",
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ledger", sa.BigInteger, nullable=False),
        sa.Column("ledger_closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contract_id", sa.String(56), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("tx_hash", sa.String(64), nullable=False),
        sa.Column("transaction_index", sa.Integer, nullable=False),
        sa.Column("operation_index", sa.Integer, nullable=False),
        sa.Column("in_successful_contract_call", sa.Boolean, nullable=False),
        sa.Column("topics_xdr", JsonType, nullable=False),
        sa.Column("value_xdr", sa.Text, nullable=False),
        sa.Column("topics", JsonType, nullable=False),
        sa.Column("value", JsonType, nullable=True),
    )
    op.create_index("ix_events_ledger", "events", ["ledger"])
    op.create_index("ix_events_contract_id", "events", ["contract_id", "id"])
    op.create_index("ix_events_name", "events", ["name", "id"])
    op.create_table(
        "acknowledged_gaps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("first_ledger", sa.BigInteger, nullable=False),
        sa.Column("last_ledger", sa.BigInteger, nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acknowledged_gaps")
    op.drop_index("ix_events_name", "events")
    op.drop_index("ix_events_contract_id", "events")
    op.drop_index("ix_events_ledger", "events")
    op.drop_table("events")
    op.drop_table("ledgers")
    op.drop_table("checkpoints")
