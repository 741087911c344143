"""The previews Flareship created: one row per repository and pull request, the sweep's only input.

Nothing Flareship did not create is ever deleted, so a preview is recorded *before* anything is
created on Cloudflare, and a removal is recorded as `removing` before the Cloudflare delete:
a crash anywhere leaves a row that says what is left to do (the sweep finishes it after a
restart). States: `active` (deployed or being deployed), `removing` (deleted on Cloudflare or
about to be; GitHub deployments still to retire), `removed`.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from bot.store.db import Database

from bot.store.base import JSON, UTCDateTime, dialect_insert, metadata, utcnow

ACTIVE, REMOVING, REMOVED = "active", "removing", "removed"

previews = sa.Table(
    "previews",
    metadata,
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("pull_request", sa.Integer, primary_key=True),
    sa.Column("installation_id", sa.BigInteger, nullable=True),
    sa.Column("mode", sa.String(16), nullable=False),  # previews | script
    #: The `from` environment (its token and account are the preview's).
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=True),
    #: The parent Worker (previews mode) or the per-PR Worker (script mode).
    sa.Column("script_name", sa.String(64), nullable=False),
    sa.Column("preview_name", sa.String(64), nullable=False),
    sa.Column("preview_id", sa.String(64), nullable=True),
    #: Script mode: the per-PR container applications' names (deleted with the Worker).
    sa.Column("container_apps", JSON, nullable=False),
    sa.Column("url", sa.String(512), nullable=True),
    sa.Column("deployment_url", sa.String(512), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    #: Open PR whose preview is gone on Cloudflare: the next push redeploys it.
    sa.Column("missing", sa.Boolean, nullable=False),
    #: GitHub deployment ids of `preview/pr-<N>` already set inactive (a restart skips them).
    sa.Column("github_deployment_ids", JSON, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_retry_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("removed_at", UTCDateTime(), nullable=True),
    sa.Index("ix_previews_state", "state"),
)


@dataclass(frozen=True)
class PreviewRecord:
    repository: str
    pull_request: int
    installation_id: int | None
    mode: str
    environment: str
    account_id: str | None
    script_name: str
    preview_name: str
    preview_id: str | None
    container_apps: list[str]
    url: str | None
    deployment_url: str | None
    state: str
    missing: bool
    github_deployment_ids: list[int]
    last_error: str | None
    attempts: int
    next_retry_at: datetime | None
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None


def _record(row: sa.Row[Any] | None) -> PreviewRecord | None:
    if row is None:
        return None
    m = dict(row._mapping)
    m["container_apps"] = list(m["container_apps"] or [])
    m["github_deployment_ids"] = [int(i) for i in m["github_deployment_ids"] or []]
    m["missing"] = bool(m["missing"])
    return PreviewRecord(**m)


class PreviewStore:
    """Queries over `previews`; every method is one short transaction."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def _key(self, repository: str, pull_request: int) -> Any:
        return sa.and_(previews.c.repository == repository, previews.c.pull_request == pull_request)

    async def get(self, repository: str, pull_request: int) -> PreviewRecord | None:
        async with self.db.connect() as conn:
            return _record((await conn.execute(sa.select(previews).where(self._key(repository, pull_request)))).first())

    async def record(self, repository: str, pull_request: int, *, installation_id: int | None, mode: str,
                     environment: str, account_id: str | None, script_name: str, preview_name: str,
                     container_apps: builtins.list[str]) -> PreviewRecord:
        """Record (before creating anything) that this PR's preview is Flareship's; a removed one comes back.

        An active or removing record of another Worker (the config's mode or `from` changed) is not
        overwritten (ValueError): the caller removes that one first, so nothing created is forgotten.
        """
        now = utcnow()
        values = dict(installation_id=installation_id, mode=mode, environment=environment, account_id=account_id,
                      script_name=script_name, preview_name=preview_name, container_apps=container_apps,
                      state=ACTIVE, updated_at=now)
        async with self.db.begin() as conn:
            insert: Any = dialect_insert(conn)
            await conn.execute(insert(previews).values(
                repository=repository, pull_request=pull_request, missing=False, github_deployment_ids=[],
                attempts=0, created_at=now, **values,
            ).on_conflict_do_nothing(index_elements=["repository", "pull_request"]))
            current = _record((await conn.execute(
                sa.select(previews).where(self._key(repository, pull_request)))).first())
            assert current is not None
            if current.state == REMOVED:  # reopened: a fresh preview, fresh history
                reset: dict[str, Any] = {"github_deployment_ids": [], "removed_at": None, "preview_id": None,
                                         "url": None, "deployment_url": None, "last_error": None, "attempts": 0,
                                         "next_retry_at": None, "missing": False}
                await conn.execute(sa.update(previews).where(self._key(repository, pull_request))
                                   .values(**values, **reset))
            elif (current.mode, current.script_name, current.environment) != (mode, script_name, environment):
                raise ValueError(f"{repository}#{pull_request} has a recorded preview of {current.script_name} "
                                 f"({current.mode} mode); remove it before recording {script_name}")
            current = _record((await conn.execute(
                sa.select(previews).where(self._key(repository, pull_request)))).first())
        assert current is not None
        return current

    async def update(self, repository: str, pull_request: int, **values: Any) -> None:
        values["updated_at"] = utcnow()
        async with self.db.begin() as conn:
            await conn.execute(sa.update(previews).where(self._key(repository, pull_request)).values(**values))

    async def deployed(self, repository: str, pull_request: int, *, preview_id: str | None, url: str | None,
                       deployment_url: str | None) -> None:
        """A deployment of the preview completed: what Cloudflare answered, and it is there again."""
        values: dict[str, Any] = {"url": url, "deployment_url": deployment_url, "missing": False}
        if preview_id:
            values["preview_id"] = preview_id
        await self.update(repository, pull_request, **values)

    async def begin_removal(self, repository: str, pull_request: int) -> PreviewRecord | None:
        """`active` -> `removing` (before the Cloudflare delete); answers the row to remove (also one a crash
        left `removing`), None when there is nothing to remove."""
        async with self.db.begin() as conn:
            await conn.execute(sa.update(previews).where(self._key(repository, pull_request),
                                                         previews.c.state == ACTIVE)
                               .values(state=REMOVING, updated_at=utcnow()))
            row = _record((await conn.execute(
                sa.select(previews).where(self._key(repository, pull_request)))).first())
        return row if row is not None and row.state == REMOVING else None

    async def removal_failed(self, repository: str, pull_request: int, error: str, next_retry_at: datetime) -> None:
        async with self.db.begin() as conn:
            await conn.execute(sa.update(previews).where(self._key(repository, pull_request)).values(
                last_error=error[:2000], attempts=previews.c.attempts + 1, next_retry_at=next_retry_at,
                updated_at=utcnow()))

    async def retired(self, repository: str, pull_request: int, github_deployment_ids: builtins.list[int]) -> None:
        await self.update(repository, pull_request, github_deployment_ids=sorted(set(github_deployment_ids)))

    async def removed(self, repository: str, pull_request: int) -> None:
        now = utcnow()
        await self.update(repository, pull_request, state=REMOVED, removed_at=now, last_error=None,
                          next_retry_at=None, missing=False)

    async def list(self, *, states: tuple[str, ...] = (ACTIVE, REMOVING),
                   repository: str | None = None) -> builtins.list[PreviewRecord]:
        q = sa.select(previews).where(previews.c.state.in_(states))
        if repository:
            q = q.where(previews.c.repository == repository)
        async with self.db.connect() as conn:
            rows = (await conn.execute(q.order_by(previews.c.repository, previews.c.pull_request))).fetchall()
        return [r for r in (_record(row) for row in rows) if r is not None]

    async def count_active(self, repository: str, *, excluding: int | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(previews).where(
            previews.c.repository == repository, previews.c.state == ACTIVE)
        if excluding is not None:
            q = q.where(previews.c.pull_request != excluding)
        async with self.db.connect() as conn:
            return int((await conn.execute(q)).scalar_one())
