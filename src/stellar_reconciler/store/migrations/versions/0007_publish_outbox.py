"""Publish outbox: what the NATS publisher still has to send, recorded with what it names;
discrepancies and settled expected records get their own mark (published_at), what was
recorded before counted as published.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publish_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("discrepancies") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    # History is not news: only discrepancies found from now on are published.
    op.execute("UPDATE discrepancies SET published_at = detected_at")
    with op.batch_alter_table("expectations") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE expectations SET published_at = settled_at")
    op.create_index(
        "ix_expectations_unpublished",
        "expectations",
        ["id"],
        sqlite_where=sa.text("settled_at IS NOT NULL AND published_at IS NULL"),
        postgresql_where=sa.text("settled_at IS NOT NULL AND published_at IS NULL"),
    )
    op.create_index(
        "ix_discrepancies_unpublished",
        "discrepancies",
        ["id"],
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_expectations_unpublished", table_name="expectations")
    with op.batch_alter_table("expectations") as batch:
        batch.drop_column("published_at")
    op.drop_index("ix_discrepancies_unpublished", table_name="discrepancies")
    with op.batch_alter_table("discrepancies") as batch:
        batch.drop_column("published_at")
    op.drop_table("publish_outbox")
