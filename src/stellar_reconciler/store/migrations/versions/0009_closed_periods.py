"""Closed periods: the Merkle roots of a range's events and ledger headers at its close.

A repair inside a closed period is compared with these roots and opens a
`closed_period_changed` discrepancy when they no longer hold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "closed_periods",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("first_ledger", sa.BigInteger, nullable=False),
        sa.Column("last_ledger", sa.BigInteger, nullable=False),
        sa.Column("events_root", sa.String(64), nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("headers_root", sa.String(64), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(64), nullable=False),
    )
    op.create_index(
        "ux_closed_periods_range", "closed_periods", ["first_ledger", "last_ledger"], unique=True
    )
    op.create_index("ix_closed_periods_last", "closed_periods", ["last_ledger"])


def downgrade() -> None:
    op.drop_index("ix_closed_periods_last", table_name="closed_periods")
    op.drop_index("ux_closed_periods_range", table_name="closed_periods")
    op.drop_table("closed_periods")
