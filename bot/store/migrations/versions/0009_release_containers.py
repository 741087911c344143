"""Releases record every container application (releases.containers), not only the first

Revision ID: 0009
Revises: 0008

Existing rows are filled from what the deployment that made the release kept in its state
(`containers`: class name -> image, digest, application id); where that state is gone, from the
release's own first-container columns.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_releases = sa.table(
    "releases",
    sa.column("id", sa.String), sa.column("deployment_id", sa.String), sa.column("image", sa.String),
    sa.column("image_digest", sa.String), sa.column("container_app_id", sa.String),
    sa.column("containers", sa.JSON),
)
_deployments = sa.table("deployments", sa.column("id", sa.String), sa.column("state", sa.JSON))


def recorded_containers(release: Any, state: Any) -> list[dict[str, Any]]:
    """The containers of an existing release row, given its deployment's state (None when gone)."""
    entries = (state or {}).get("containers") if isinstance(state, dict) else None
    found = [{"class_name": str(name), "app_id": str(entry["app_id"]), "image": str(entry["image"]),
              "image_digest": entry.get("image_digest")}
             for name, entry in (entries or {}).items()
             if isinstance(entry, dict) and entry.get("app_id") and entry.get("image")]
    if release.container_app_id and release.image and release.container_app_id not in {e["app_id"] for e in found}:
        found.insert(0, {"class_name": None, "app_id": release.container_app_id, "image": release.image,
                         "image_digest": release.image_digest})
    return found


def upgrade() -> None:
    op.add_column("releases", sa.Column("containers", sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_releases.c.id, _releases.c.image, _releases.c.image_digest, _releases.c.container_app_id,
                  _deployments.c.state)
        .select_from(_releases.outerjoin(_deployments, _deployments.c.id == _releases.c.deployment_id))
    ).all()
    for row in rows:
        bind.execute(_releases.update().where(_releases.c.id == row.id)
                     .values(containers=recorded_containers(row, row.state)))


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("containers")
