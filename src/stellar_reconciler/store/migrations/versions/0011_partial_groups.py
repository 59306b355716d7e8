"""Partial and grouped settlement: records paid by a sum of events.

A record with `allow_partial` is paid in instalments; records sharing a `group_id` are paid as
a whole (partial.py). Each keeps the sum taken so far (`settled_amount`); the events a sum
took are in `expectation_parts`, one row per event, so an event is claimed once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("expectations") as batch:
        batch.add_column(
            sa.Column("allow_partial", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("group_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("settled_amount", sa.String(48), nullable=True))
    op.create_index("ix_expectations_group", "expectations", ["group_id"])
    op.create_index(
        "ix_expectations_partial_deadline",
        "expectations",
        ["deadline_ledger"],
        sqlite_where=sa.text("status = 'partially_matched'"),
        postgresql_where=sa.text("status = 'partially_matched'"),
    )
    op.create_table(
        "expectation_parts",
        sa.Column("event_id", sa.String(32), primary_key=True),
        sa.Column("expectation_id", sa.Integer, nullable=False),
        sa.Column("group_id", sa.String(128), nullable=True),
        sa.Column("event_ledger", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.String(48), nullable=False),
        sa.Column("overshoot", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_expectation_parts_expectation", "expectation_parts", ["expectation_id"])
    op.create_index("ix_expectation_parts_group", "expectation_parts", ["group_id"])


def downgrade() -> None:
    op.drop_table("expectation_parts")
    op.drop_index("ix_expectations_partial_deadline", table_name="expectations")
    op.drop_index("ix_expectations_group", table_name="expectations")
    with op.batch_alter_table("expectations") as batch:
        for name in ("settled_amount", "group_id", "allow_partial"):
            batch.drop_column(name)
