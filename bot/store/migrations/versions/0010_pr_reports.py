"""What GitHub shows in full of each deployment (pr_reports), so a replica's unfinished report is redone

Revision ID: 0010
Revises: 0009

Deployments get an index on `updated_at`, which the recovery pass's window reads. Deployments
that had already ended are taken as reported: the reporter that ran them wrote GitHub's side
before this table existed, and writing it again would only repeat their reactions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_FINAL = ("cancelled", "completed", "failed", "rolled_back")


def upgrade() -> None:
    op.create_table(
        "pr_reports",
        sa.Column("deployment_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", bot.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", name=op.f("pk_pr_reports")),
    )
    op.create_index("ix_deployments_updated_at", "deployments", ["updated_at"])
    deployments = sa.table("deployments", sa.column("id", sa.String), sa.column("status", sa.String),
                           sa.column("repository", sa.String), sa.column("updated_at", bot.store.base.UTCDateTime()))
    reports = sa.table("pr_reports", sa.column("deployment_id", sa.String), sa.column("status", sa.String),
                       sa.column("updated_at", bot.store.base.UTCDateTime()))
    op.execute(reports.insert().from_select(
        ["deployment_id", "status", "updated_at"],
        sa.select(deployments.c.id, deployments.c.status, deployments.c.updated_at)
        .where(deployments.c.status.in_(_FINAL), deployments.c.repository.is_not(None))))


def downgrade() -> None:
    op.drop_index("ix_deployments_updated_at", table_name="deployments")
    op.drop_table("pr_reports")
