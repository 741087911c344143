"""Pull-request workflows: commands, check runs, PR comments, GitHub deployments

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pr_commands",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("pull_request", sa.Integer(), nullable=True),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("environment", sa.String(64), nullable=True),
        sa.Column("deployment_id", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("created_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_pr_commands")),
    )
    op.create_index("ix_pr_commands_deployment_id", "pr_commands", ["deployment_id"])
    op.create_table(
        "pr_check_runs",
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("check_run_id", sa.BigInteger(), nullable=True),
        sa.Column("deployment_id", sa.String(40), nullable=True),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository", "head_sha", "environment", name=op.f("pk_pr_check_runs")),
    )
    op.create_table(
        "pr_comments",
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("pull_request", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repository", "pull_request", name=op.f("pk_pr_comments")),
    )
    op.create_table(
        "pr_github_deployments",
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("github_deployment_id", sa.BigInteger(), nullable=True),
        sa.Column("last_state", sa.String(16), nullable=True),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", name=op.f("pk_pr_github_deployments")),
    )
    op.create_index(
        "ix_pr_github_deployments_repository_environment", "pr_github_deployments", ["repository", "environment"]
    )


def downgrade() -> None:
    op.drop_index("ix_pr_github_deployments_repository_environment", table_name="pr_github_deployments")
    op.drop_table("pr_github_deployments")
    op.drop_table("pr_comments")
    op.drop_table("pr_check_runs")
    op.drop_index("ix_pr_commands_deployment_id", table_name="pr_commands")
    op.drop_table("pr_commands")
