"""Dispatcher owners: each dispatcher process registers with a heartbeat; a claim names its owner

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dispatchers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatchers")),
    )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("dispatchers")
