"""Engine: deployments, deployment logs, releases, leases, environment locks

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("script_name", sa.String(128), nullable=False),
        sa.Column("repository", sa.String(255), nullable=True),
        sa.Column("sha", sa.String(64), nullable=True),
        sa.Column("pull_request", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("queued_at", bot.store.base.UTCDateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_target_environment_status", "deployments", ["target", "environment", "status"])
    op.create_index("ix_deployments_status_queued_at", "deployments", ["status", "queued_at"])
    op.create_index("ix_deployments_script_name", "deployments", ["script_name"])
    op.create_index("ix_deployments_repository", "deployments", ["repository"])
    op.create_index("ix_deployments_created_at", "deployments", ["created_at"])

    op.create_table(
        "deployment_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("timestamp", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_logs")),
    )
    op.create_index("ix_deployment_logs_deployment_id_id", "deployment_logs", ["deployment_id", "id"])

    op.create_table(
        "releases",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("script_name", sa.String(128), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=True),
        sa.Column("image", sa.String(512), nullable=True),
        sa.Column("image_digest", sa.String(100), nullable=True),
        sa.Column("container_app_id", sa.String(64), nullable=True),
        sa.Column("migration_tag", sa.String(64), nullable=True),
        sa.Column("sha", sa.String(64), nullable=True),
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("created_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
    )
    op.create_index("ix_releases_target_environment_created_at", "releases", ["target", "environment", "created_at"])

    op.create_table(
        "leases",
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("deployment_id", sa.String(40), nullable=True),
        sa.Column("acquired_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("target", "environment", name=op.f("pk_leases")),
    )

    op.create_table(
        "environment_locks",
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("target", "environment", name=op.f("pk_environment_locks")),
    )


def downgrade() -> None:
    op.drop_table("environment_locks")
    op.drop_table("leases")
    op.drop_index("ix_releases_target_environment_created_at", table_name="releases")
    op.drop_table("releases")
    op.drop_index("ix_deployment_logs_deployment_id_id", table_name="deployment_logs")
    op.drop_table("deployment_logs")
    for ix in ("ix_deployments_created_at", "ix_deployments_repository", "ix_deployments_script_name",
               "ix_deployments_status_queued_at", "ix_deployments_target_environment_status"):
        op.drop_index(ix, table_name="deployments")
    op.drop_table("deployments")
