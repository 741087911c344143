"""GitHub App installations and the repositories each one grants, as GitHub's webhooks report them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.base import JSON, UTCDateTime, dialect_insert, metadata, utcnow

if TYPE_CHECKING:
    from bot.store.db import Database

installations = sa.Table(
    "installations",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
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
)

installation_repositories = sa.Table(
    "installation_repositories",
    metadata,
    sa.Column(
        "installation_id",
        sa.BigInteger,
        sa.ForeignKey("installations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("repository_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("full_name", sa.String(255), nullable=False),
    sa.Column("private", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Index("ix_installation_repositories_full_name", "full_name"),
)


def _installation_values(installation: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    account = installation.get("account") or {}
    return {
        "id": int(installation["id"]),
        "account_login": account.get("login") or "",
        "account_type": account.get("type") or installation.get("target_type"),
        "app_id": installation.get("app_id"),
        "repository_selection": installation.get("repository_selection"),
        "permissions": dict(installation.get("permissions") or {}),
        "events": list(installation.get("events") or []),
        "suspended": bool(installation.get("suspended_at")),
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }


async def _save_installation(conn: AsyncConnection, installation: Mapping[str, Any], *, refresh: bool = True) -> None:
    """Create or refresh an installation from GitHub's `installation` object (a re-install undeletes).

    `refresh=False` only makes sure the row exists: events other than `installation` may carry a
    partial object that must not overwrite what the `installation` event recorded.
    """
    values = _installation_values(installation, utcnow())
    insert = dialect_insert(conn)(installations).values(values)
    if not refresh:
        await conn.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
        return
    update = {k: insert.excluded[k] for k in values if k not in ("id", "created_at")}
    await conn.execute(insert.on_conflict_do_update(index_elements=["id"], set_=update))


async def _mark_installation_deleted(conn: AsyncConnection, installation_id: int) -> None:
    now = utcnow()
    await conn.execute(
        sa.update(installations).where(installations.c.id == installation_id).values(deleted_at=now, updated_at=now)
    )
    await conn.execute(
        sa.delete(installation_repositories).where(installation_repositories.c.installation_id == installation_id)
    )


async def _add_repositories(conn: AsyncConnection, installation_id: int, repositories: Iterable[Mapping[str, Any]]) -> None:
    """Record repositories (GitHub's `{id, full_name, private}` objects) as granted to the installation."""
    rows = [
        {
            "installation_id": installation_id,
            "repository_id": int(repo["id"]),
            "full_name": repo["full_name"],
            "private": bool(repo.get("private", False)),
            "added_at": utcnow(),
        }
        for repo in repositories
    ]
    if rows:
        insert = dialect_insert(conn)(installation_repositories)
        statement = insert.on_conflict_do_update(
            index_elements=["installation_id", "repository_id"],
            set_={"full_name": insert.excluded.full_name, "private": insert.excluded.private},
        )
        await conn.execute(statement, rows)


async def _remove_repositories(conn: AsyncConnection, installation_id: int, repositories: Iterable[Mapping[str, Any]]) -> None:
    ids = [int(repo["id"]) for repo in repositories]
    if ids:
        t = installation_repositories
        await conn.execute(sa.delete(t).where(t.c.installation_id == installation_id, t.c.repository_id.in_(ids)))


class InstallationStore:
    """The installations tables: what GitHub's installation events recorded, one transaction per event."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def installed(self, installation: Mapping[str, Any], repositories: Iterable[Mapping[str, Any]] = ()) -> None:
        """`installation` created (with the repositories it grants) or changed: create or refresh it."""
        async with self.database.begin() as conn:
            await _save_installation(conn, installation)
            await _add_repositories(conn, int(installation["id"]), repositories)

    async def deleted(self, installation: Mapping[str, Any]) -> None:
        """The App was uninstalled: the row is kept, marked deleted, its repositories forgotten."""
        async with self.database.begin() as conn:
            await _save_installation(conn, installation, refresh=False)
            await _mark_installation_deleted(conn, int(installation["id"]))

    async def repositories_changed(self, installation: Mapping[str, Any], added: Iterable[Mapping[str, Any]],
                                   removed: Iterable[Mapping[str, Any]]) -> None:
        async with self.database.begin() as conn:
            await _save_installation(conn, installation, refresh=False)
            await _add_repositories(conn, int(installation["id"]), added)
            await _remove_repositories(conn, int(installation["id"]), removed)

    async def get(self, installation_id: int) -> dict[str, Any] | None:
        async with self.database.connect() as conn:
            row = (await conn.execute(sa.select(installations).where(installations.c.id == installation_id))).first()
        return dict(row._mapping) if row is not None else None

    async def repositories(self, installation_id: int) -> list[str]:
        t = installation_repositories
        async with self.database.connect() as conn:
            rows = await conn.execute(
                sa.select(t.c.full_name).where(t.c.installation_id == installation_id).order_by(t.c.full_name)
            )
            return list(rows.scalars())

    async def for_repository(self, full_name: str) -> int | None:
        """The live installation that grants `owner/name`, if Flareship has been told of one."""
        r, i = installation_repositories, installations
        async with self.database.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(r.c.installation_id)
                    .join(i, i.c.id == r.c.installation_id)
                    .where(sa.func.lower(r.c.full_name) == full_name.lower(), i.c.deleted_at.is_(None))
                    .limit(1)
                )
            ).first()
        return row[0] if row else None
