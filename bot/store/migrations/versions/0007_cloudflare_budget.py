"""Cloudflare request budget shared by replicas: requests per token hash and time slice

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Used on PostgreSQL only (bot/store/cloudflare_budget.py); created on SQLite too, so that one
    # schema holds on both.
    op.create_table(
        "cloudflare_budget",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("slice_start", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", "slice_start", name=op.f("pk_cloudflare_budget")),
    )


def downgrade() -> None:
    op.drop_table("cloudflare_budget")
