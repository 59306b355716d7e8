"""Event shapes: the ScVal types each contract's events have had, per event name, and the
pending records whose amount a fitting event no longer carries in a readable form.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_shapes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contract_id", sa.String(56), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("shape", JsonType, nullable=False),
        sa.Column("first_ledger", sa.BigInteger, nullable=False),
        sa.Column("first_event_id", sa.String(32), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ux_event_shapes_digest", "event_shapes", ["contract_id", "name", "digest"], unique=True
    )
    with op.batch_alter_table("expectations") as batch:
        batch.add_column(sa.Column("unreadable_event_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("unreadable_reason", sa.String(400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("expectations") as batch:
        batch.drop_column("unreadable_reason")
        batch.drop_column("unreadable_event_id")
    op.drop_index("ux_event_shapes_digest", table_name="event_shapes")
    op.drop_table("event_shapes")
