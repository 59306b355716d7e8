"""Reconciliation: discrepancies (with a webhook outbox), gap consents and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "gap_consents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("through_ledger", sa.BigInteger, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "discrepancies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("first_ledger", sa.BigInteger, nullable=True),
        sa.Column("last_ledger", sa.BigInteger, nullable=True),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("expected", JsonType, nullable=True),
        sa.Column("found", JsonType, nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index(
        "ux_discrepancies_open_key",
        "discrepancies",
        ["key"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_discrepancies_kind_open", "discrepancies", ["kind", "resolved_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("detail", JsonType, nullable=True),
        sa.Column("remote_addr", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_discrepancies_kind_open", "discrepancies")
    op.drop_index("ux_discrepancies_open_key", "discrepancies")
    op.drop_table("discrepancies")
    op.drop_table("gap_consents")
