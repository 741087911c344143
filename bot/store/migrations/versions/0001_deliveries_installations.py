"""Webhook deliveries and GitHub App installations.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.store.base import JSON, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(100), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=True),
        sa.Column("installation_id", sa.BigInteger, nullable=True),
        sa.Column("repository", sa.String(255), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("processed_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("delivery_id", name="uq_webhook_deliveries_delivery_id"),
    )
    op.create_index("ix_webhook_deliveries_status_id", "webhook_deliveries", ["status", "id"])

    op.create_table(
        "installations",
        sa.Column("id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("account_login", sa.String(255), nullable=False),
        sa.Column("account_type", sa.String(32), nullable=True),
        sa.Column("app_id", sa.BigInteger, nullable=True),
        sa.Column("repository_selection", sa.String(16), nullable=True),
        sa.Column("permissions", JSON, nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("suspended", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_installations"),
    )
    op.create_table(
        "installation_repositories",
        sa.Column("installation_id", sa.BigInteger, nullable=False),
        sa.Column("repository_id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("full_name", sa.String(255), nullable=False),
        sa.Column("private", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("added_at", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["installation_id"],
            ["installations.id"],
            name="fk_installation_repositories_installation_id_installations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("installation_id", "repository_id", name="pk_installation_repositories"),
    )
    op.create_index("ix_installation_repositories_full_name", "installation_repositories", ["full_name"])


def downgrade() -> None:
    op.drop_table("installation_repositories")
    op.drop_table("installations")
    op.drop_table("webhook_deliveries")
