"""Deployments, their logs, releases, leases and manual locks (the engine's tables).

A deployment row keeps the full `Deployment` document as JSON beside the few columns queries
need (status, target, environment, queue order). Leases are rows with an expiry: whoever holds
one renews it; anyone may take it over once it has expired, so a dead process never leaves a
stuck lock. All times are supplied by the caller (an injectable clock), never by the database.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.store.base import JSON, UTCDateTime, metadata

#: `environment=preview` lists the previews of every pull request (bot/engine/preview_spec.py names them).
PREVIEWS = "preview"

if TYPE_CHECKING:
    from bot.store.db import Database

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=True),
    sa.Column("script_name", sa.String(128), nullable=False),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("sha", sa.String(64), nullable=True),
    sa.Column("pull_request", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("queued_at", UTCDateTime(), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("document", JSON, nullable=False),
    sa.Column("state", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_deployments_target_environment_status", "target", "environment", "status"),
    sa.Index("ix_deployments_status_queued_at", "status", "queued_at"),
    sa.Index("ix_deployments_script_name", "script_name"),
    sa.Index("ix_deployments_repository", "repository"),
    sa.Index("ix_deployments_created_at", "created_at"),
    sa.Index("ix_deployments_updated_at", "updated_at"),  # the reporter's recovery pass (pr_reports)
)

deployment_logs = sa.Table(
    "deployment_logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(40), nullable=False),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("step", sa.String(64), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_deployment_logs_deployment_id_id", "deployment_id", "id"),
)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
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
    sa.Column("created_at", UTCDateTime(), nullable=False),
    #: Every container application: [{"class_name", "app_id", "image", "image_digest"}] (migration 0009).
    sa.Column("containers", sa.JSON, nullable=True),
    sa.Index("ix_releases_target_environment_created_at", "target", "environment", "created_at"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("deployment_id", sa.String(40), nullable=True),
    sa.Column("acquired_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

environment_locks = sa.Table(
    "environment_locks",
    metadata,
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)



def _inserted_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT always reports its key
    return int(key[0])


class DeploymentStore:
    """Queries over the engine's tables; `db` is the store's `Database` (needs `.begin()`/`.connect()`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- deployments -------------------------------------------------------------------

    async def insert(self, row: dict[str, Any]) -> None:
        async with self.db.begin() as conn:
            await conn.execute(deployments.insert().values(**row))

    async def update(self, deployment_id: str, **values: Any) -> None:
        async with self.db.begin() as conn:
            await conn.execute(deployments.update().where(deployments.c.id == deployment_id).values(**values))

    async def update_and_log(self, deployment_id: str, values: dict[str, Any],
                             logs: Sequence[tuple[datetime, str, str, str | None]] = (),
                             release: dict[str, Any] | None = None,
                             only_if_status: tuple[str, ...] | None = None) -> tuple[bool, bool, list[int]]:
        """One transaction: update the row (optionally only when its status is one of
        `only_if_status`), add log lines and a release.

        Returns (updated, cancel_requested, log ids); nothing is written when not updated.
        """
        async with self.db.begin() as conn:
            statement = deployments.update().where(deployments.c.id == deployment_id)
            if only_if_status is not None:
                statement = statement.where(deployments.c.status.in_(only_if_status))
            result = await conn.execute(statement.values(**values).returning(deployments.c.cancel_requested))
            row = result.first()
            if row is None:
                await conn.rollback()
                return False, False, []
            if release is not None:
                existing = (await conn.execute(sa.select(releases.c.id).where(
                    releases.c.deployment_id == release["deployment_id"]))).first()
                if existing is None:
                    await conn.execute(releases.insert().values(**release))
            ids = []
            for timestamp, level, message, step in logs:
                inserted = await conn.execute(deployment_logs.insert().values(
                    deployment_id=deployment_id, timestamp=timestamp, level=level, message=message, step=step))
                ids.append(_inserted_id(inserted))
            return True, bool(row[0]), ids

    async def cancel_requested(self, deployment_id: str) -> bool:
        async with self.db.connect() as conn:
            value = (await conn.execute(sa.select(deployments.c.cancel_requested).where(
                deployments.c.id == deployment_id))).scalar()
            return bool(value)

    async def update_if(self, deployment_id: str, statuses: tuple[str, ...], **values: Any) -> bool:
        """Compare-and-set on status: True when the row was in one of `statuses` and is now updated."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                deployments.update()
                .where(deployments.c.id == deployment_id, deployments.c.status.in_(statuses))
                .values(**values)
            )
            return result.rowcount == 1

    async def get(self, deployment_id: str) -> sa.Row[Any] | None:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(deployments).where(deployments.c.id == deployment_id))).first()

    async def list(self, *, environment: str | None = None, repository: str | None = None,
                   status: str | Sequence[str] | None = None, target: str | None = None, limit: int = 50,
                   before: str | None = None) -> builtins.list[sa.Row[Any]]:
        q = sa.select(deployments)
        if environment == PREVIEWS:  # every pull request's preview (`preview/pr-<N>`)
            q = q.where(deployments.c.environment.like(f"{PREVIEWS}/pr-%"))
        elif environment:
            q = q.where(deployments.c.environment == environment)
        if repository:
            q = q.where(deployments.c.repository == repository)
        if target:
            q = q.where(deployments.c.target == target)
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            q = q.where(deployments.c.status.in_(statuses))
        if before:
            q = q.where(deployments.c.id < before)
        q = q.order_by(deployments.c.id.desc()).limit(limit)
        async with self.db.connect() as conn:
            return list((await conn.execute(q)).fetchall())

    async def active_keys(self) -> builtins.list[tuple[str, str]]:
        """(target, environment) pairs with queued or in-progress deployments."""
        q = (sa.select(deployments.c.target, deployments.c.environment)
             .where(deployments.c.status.in_(("queued", "in_progress"))).distinct())
        async with self.db.connect() as conn:
            return [(r.target, r.environment) for r in (await conn.execute(q)).fetchall()]

    async def queue(self, target: str, environment: str) -> builtins.list[sa.Row[Any]]:
        """In-progress deployments first (to resume), then queued ones in FIFO order."""
        q = (
            sa.select(deployments.c.id, deployments.c.status, deployments.c.queued_at)
            .where(deployments.c.target == target, deployments.c.environment == environment,
                   deployments.c.status.in_(("queued", "in_progress")))
            .order_by(sa.case((deployments.c.status == "in_progress", 0), else_=1),
                      deployments.c.queued_at, deployments.c.id)
        )
        async with self.db.connect() as conn:
            return list((await conn.execute(q)).fetchall())

    async def counts(self) -> dict[str, int]:
        q = (sa.select(deployments.c.status, sa.func.count())
             .where(deployments.c.status.in_(("queued", "in_progress"))).group_by(deployments.c.status))
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).fetchall()
        by = {r[0]: r[1] for r in rows}
        return {"active": by.get("in_progress", 0), "queued": by.get("queued", 0)}

    async def script_owners(self, script_name: str, account_id: str | None) -> set[str]:
        """Targets that Flareship has deployed `script_name` for (on that account when known)."""
        q = sa.select(deployments.c.target).where(
            deployments.c.script_name == script_name,
            deployments.c.status.notin_(("cancelled",)),
        )
        if account_id:
            q = q.where(sa.or_(deployments.c.account_id == account_id, deployments.c.account_id.is_(None)))
        async with self.db.connect() as conn:
            return {r[0] for r in (await conn.execute(q.distinct())).fetchall()}

    # -- logs --------------------------------------------------------------------------

    async def add_log(self, deployment_id: str, timestamp: datetime, level: str, message: str,
                      step: str | None) -> int:
        async with self.db.begin() as conn:
            result = await conn.execute(deployment_logs.insert().values(
                deployment_id=deployment_id, timestamp=timestamp, level=level, message=message, step=step))
            return _inserted_id(result)

    async def logs(self, deployment_id: str, after: int = 0, limit: int = 10_000) -> builtins.list[sa.Row[Any]]:
        q = (sa.select(deployment_logs).where(deployment_logs.c.deployment_id == deployment_id,
                                              deployment_logs.c.id > after)
             .order_by(deployment_logs.c.id).limit(limit))
        async with self.db.connect() as conn:
            return list((await conn.execute(q)).fetchall())

    # -- releases ----------------------------------------------------------------------

    async def add_release(self, row: dict[str, Any]) -> None:
        async with self.db.begin() as conn:
            existing = (await conn.execute(sa.select(releases.c.id).where(
                releases.c.deployment_id == row["deployment_id"]))).first()
            if existing is None:
                await conn.execute(releases.insert().values(**row))

    async def release_of(self, deployment_id: str) -> sa.Row[Any] | None:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(releases).where(releases.c.deployment_id == deployment_id))).first()

    async def latest_release(self, target: str, environment: str) -> sa.Row[Any] | None:
        q = (sa.select(releases).where(releases.c.target == target, releases.c.environment == environment)
             .order_by(releases.c.created_at.desc(), releases.c.id.desc()).limit(1))
        async with self.db.connect() as conn:
            return (await conn.execute(q)).first()

    async def find_release(self, target: str, environment: str, ref: str) -> sa.Row[Any] | None:
        """A release by its id, its Worker version id, or its deployment id."""
        q = (sa.select(releases).where(releases.c.target == target, releases.c.environment == environment,
                                       sa.or_(releases.c.id == ref, releases.c.version_id == ref,
                                              releases.c.deployment_id == ref))
             .order_by(releases.c.created_at.desc()).limit(1))
        async with self.db.connect() as conn:
            return (await conn.execute(q)).first()

    # -- leases ------------------------------------------------------------------------

    async def acquire_lease(self, target: str, environment: str, holder: str, deployment_id: str,
                            now: datetime, ttl: timedelta) -> bool:
        """Take the lease if free, expired or already ours. Atomic on SQLite and PostgreSQL."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                leases.update()
                .where(leases.c.target == target, leases.c.environment == environment,
                       sa.or_(leases.c.expires_at < now, leases.c.holder == holder))
                .values(holder=holder, deployment_id=deployment_id, acquired_at=now, expires_at=now + ttl)
            )
            if result.rowcount == 1:
                return True
            exists = (await conn.execute(sa.select(leases.c.holder).where(
                leases.c.target == target, leases.c.environment == environment))).first()
            if exists is not None:
                return False
        try:
            async with self.db.begin() as conn:
                await conn.execute(leases.insert().values(
                    target=target, environment=environment, holder=holder, deployment_id=deployment_id,
                    acquired_at=now, expires_at=now + ttl))
            return True
        except IntegrityError:
            return False

    async def renew_lease(self, target: str, environment: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        async with self.db.begin() as conn:
            result = await conn.execute(
                leases.update()
                .where(leases.c.target == target, leases.c.environment == environment, leases.c.holder == holder)
                .values(expires_at=now + ttl)
            )
            return result.rowcount == 1

    async def release_lease(self, target: str, environment: str, holder: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(leases.delete().where(
                leases.c.target == target, leases.c.environment == environment, leases.c.holder == holder))

    async def drop_ended_leases(self, now: datetime, final: Iterable[str]) -> int:
        """Delete the expired leases of deployments that had ended: their holder died between the
        end and the release, and no one would ever resume them (the next deployment of the
        environment could take them over; until then they look held). Answers how many."""
        ended = sa.select(deployments.c.id).where(deployments.c.status.in_(sorted(final)))
        async with self.db.begin() as conn:
            result = await conn.execute(leases.delete().where(leases.c.expires_at < now,
                                                              leases.c.deployment_id.in_(ended)))
        return int(result.rowcount or 0)

    async def get_lease(self, target: str, environment: str) -> sa.Row[Any] | None:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(leases).where(
                leases.c.target == target, leases.c.environment == environment))).first()

    # -- manual locks ------------------------------------------------------------------

    async def set_lock(self, target: str, environment: str, actor: str, reason: str | None, now: datetime) -> sa.Row[Any]:
        """Lock the environment; an existing lock is kept (and returned) unchanged."""
        try:
            async with self.db.begin() as conn:
                await conn.execute(environment_locks.insert().values(
                    target=target, environment=environment, actor=actor, reason=reason, created_at=now))
        except IntegrityError:
            pass
        lock = await self.get_lock(target, environment)
        if lock is None:  # inserted or kept above; gone only if an unlock raced this call
            raise LookupError(f"the lock on {target} {environment} was removed while it was being set")
        return lock

    async def delete_lock(self, target: str, environment: str) -> bool:
        async with self.db.begin() as conn:
            result = await conn.execute(environment_locks.delete().where(
                environment_locks.c.target == target, environment_locks.c.environment == environment))
            return result.rowcount == 1

    async def get_lock(self, target: str, environment: str) -> sa.Row[Any] | None:
        async with self.db.connect() as conn:
            return (await conn.execute(sa.select(environment_locks).where(
                environment_locks.c.target == target, environment_locks.c.environment == environment))).first()
