"""Network: the passphrase of the network the data came from, recorded once.

A database filled on testnet and then pointed at mainnet (or at a reset network) would mix two
histories; with the passphrase stored, start-up refuses a different network.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("passphrase", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_network_one_row"),
    )


def downgrade() -> None:
    op.drop_table("network")
