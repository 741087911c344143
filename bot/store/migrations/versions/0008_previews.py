"""Previews Flareship created (one per repository and pull request): what the sweep may remove

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "previews",
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("pull_request", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("script_name", sa.String(64), nullable=False),
        sa.Column("preview_name", sa.String(64), nullable=False),
        sa.Column("preview_id", sa.String(64), nullable=True),
        sa.Column("container_apps", sa.JSON(), nullable=False),
        sa.Column("url", sa.String(512), nullable=True),
        sa.Column("deployment_url", sa.String(512), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("missing", sa.Boolean(), nullable=False),
        sa.Column("github_deployment_ids", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_retry_at", bot.store.base.UTCDateTime(), nullable=True),
        sa.Column("created_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("removed_at", bot.store.base.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("repository", "pull_request", name=op.f("pk_previews")),
    )
    op.create_index("ix_previews_state", "previews", ["state"])


def downgrade() -> None:
    op.drop_index("ix_previews_state", table_name="previews")
    op.drop_table("previews")
