"""Gap consents name the gap they accept, record what they skipped, and can be revoked.

Consents recorded before this revision name no gap; they stay visible and are never carried out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIVE = sa.text("consumed_at IS NULL AND revoked_at IS NULL")


def upgrade() -> None:
    op.add_column("gap_consents", sa.Column("first_ledger", sa.BigInteger, nullable=True))
    op.add_column("gap_consents", sa.Column("last_ledger", sa.BigInteger, nullable=True))
    op.add_column(
        "gap_consents", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("gap_consents", sa.Column("revoked_by", sa.String(64), nullable=True))
    op.create_index(
        "ux_gap_consents_live",
        "gap_consents",
        ["stream", "first_ledger"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index("ux_gap_consents_live", "gap_consents")
    with op.batch_alter_table("gap_consents") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
        batch.drop_column("last_ledger")
        batch.drop_column("first_ledger")
