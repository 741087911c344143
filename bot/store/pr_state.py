"""Pull-request workflow state: which command made which deployment, and which GitHub objects
(check run, PR comment, GitHub deployment) mirror it.

Every GitHub object is *claimed* in a row before it is created and its id recorded after, so a
redelivered webhook or a restart finds the row and edits the object instead of creating a second
one. A claim without an id means a crash between the two; the caller then looks the object up on
GitHub once (recovery path only) rather than creating a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from bot.store.db import Database

from bot.store.base import JSON, UTCDateTime, dialect_insert, metadata, utcnow
from bot.store.deployments import deployments

#: One row per handled trigger (a comment, a label, a merge+env, a button click).
pr_commands = sa.Table(
    "pr_commands",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("pull_request", sa.Integer, nullable=True),
    sa.Column("comment_id", sa.BigInteger, nullable=True),
    sa.Column("environment", sa.String(64), nullable=True),
    sa.Column("deployment_id", sa.String(40), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # claimed | started | refused | done
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_pr_commands_deployment_id", "deployment_id"),
)

#: One `Deploy to <env>` check run per repository, head SHA and environment.
pr_check_runs = sa.Table(
    "pr_check_runs",
    metadata,
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("head_sha", sa.String(64), primary_key=True),
    sa.Column("environment", sa.String(64), primary_key=True),
    sa.Column("check_run_id", sa.BigInteger, nullable=True),
    sa.Column("deployment_id", sa.String(40), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

#: The one Flareship comment per pull request and the table it shows.
pr_comments = sa.Table(
    "pr_comments",
    metadata,
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("pull_request", sa.Integer, primary_key=True),
    sa.Column("comment_id", sa.BigInteger, nullable=True),
    sa.Column("state", JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

#: The GitHub deployment mirroring each Flareship deployment.
pr_github_deployments = sa.Table(
    "pr_github_deployments",
    metadata,
    sa.Column("deployment_id", sa.String(40), primary_key=True),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("github_deployment_id", sa.BigInteger, nullable=True),
    sa.Column("last_state", sa.String(16), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_pr_github_deployments_repository_environment", "repository", "environment"),
)

#: The last status of each GitHub-triggered deployment whose GitHub side (check run, deployment
#: status, comment, reaction) was written in full. A final deployment without its row here was
#: not finished on GitHub (the replica died first, or GitHub kept failing): any replica's
#: reporter writes it again (bot/github/reporter.py, `recover`).
pr_reports = sa.Table(
    "pr_reports",
    metadata,
    sa.Column("deployment_id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class CommandRow:
    key: str
    repository: str
    pull_request: int | None
    comment_id: int | None
    environment: str | None
    deployment_id: str | None
    outcome: str
    created_at: datetime


def _command(row: sa.Row[Any] | None) -> CommandRow | None:
    if row is None:
        return None
    m = row._mapping
    return CommandRow(m["key"], m["repository"], m["pull_request"], m["comment_id"], m["environment"],
                      m["deployment_id"], m["outcome"], m["created_at"])


class PullRequestState:
    """Queries over the five tables; every method is one short transaction."""

    def __init__(self, database: Database) -> None:
        self.db = database

    # -- commands ------------------------------------------------------------------------

    async def claim_command(
        self, key: str, *, repository: str, pull_request: int | None = None, comment_id: int | None = None,
        environment: str | None = None,
    ) -> tuple[CommandRow, bool]:
        """Insert the trigger's row unless it exists; answers (row, True when this call created it)."""
        now = utcnow()
        async with self.db.begin() as conn:
            insert: Any = dialect_insert(conn)
            result = await conn.execute(
                insert(pr_commands)
                .values(key=key, repository=repository, pull_request=pull_request, comment_id=comment_id,
                        environment=environment, outcome="claimed", created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            created = bool(result.rowcount == 1)
            command = _command((await conn.execute(sa.select(pr_commands).where(pr_commands.c.key == key))).first())
        assert command is not None  # inserted above, or there already
        return command, created

    async def finish_command(self, key: str, *, outcome: str, deployment_id: str | None = None,
                             environment: str | None = None) -> None:
        values: dict[str, Any] = {"outcome": outcome, "updated_at": utcnow()}
        if deployment_id is not None:
            values["deployment_id"] = deployment_id
        if environment is not None:
            values["environment"] = environment
        async with self.db.begin() as conn:
            await conn.execute(sa.update(pr_commands).where(pr_commands.c.key == key).values(**values))

    async def command_for_deployment(self, deployment_id: str) -> CommandRow | None:
        """The latest trigger of the deployment (a /retry comment after the /deploy that failed)."""
        async with self.db.connect() as conn:
            row = (await conn.execute(
                sa.select(pr_commands).where(pr_commands.c.deployment_id == deployment_id)
                .order_by(pr_commands.c.created_at.desc()).limit(1)
            )).first()
        return _command(row)

    # -- what was written in full --------------------------------------------------------

    async def mark_reported(self, deployment_id: str, status: str) -> None:
        """The deployment's GitHub side shows `status` in full."""
        async with self.db.begin() as conn:
            insert: Any = dialect_insert(conn)
            stmt = insert(pr_reports).values(deployment_id=deployment_id, status=status, updated_at=utcnow())
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=["deployment_id"], set_={"status": status, "updated_at": utcnow()}))

    async def unreported(self, final: Iterable[str], *, ended_after: datetime, ended_before: datetime,
                         limit: int = 20) -> list[str]:
        """Deployments from a repository that ended (status in `final`) within the window and whose
        final status GitHub does not show in full yet, newest first (one GitHub keeps refusing
        cannot hold up later ones)."""
        d = deployments
        async with self.db.connect() as conn:
            rows = (await conn.execute(
                sa.select(d.c.id).select_from(d.outerjoin(pr_reports, pr_reports.c.deployment_id == d.c.id))
                .where(d.c.status.in_(sorted(final)), d.c.repository.is_not(None), d.c.sha.is_not(None),
                       d.c.updated_at > ended_after, d.c.updated_at <= ended_before,
                       sa.or_(pr_reports.c.status.is_(None), pr_reports.c.status != d.c.status))
                .order_by(d.c.updated_at.desc()).limit(limit)
            )).all()
        return [row[0] for row in rows]

    # -- check runs ----------------------------------------------------------------------

    async def check_run(self, repository: str, head_sha: str, environment: str) -> tuple[bool, int | None]:
        """(claimed?, check_run_id) for this repository, SHA and environment."""
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(pr_check_runs.c.check_run_id).where(
                pr_check_runs.c.repository == repository, pr_check_runs.c.head_sha == head_sha,
                pr_check_runs.c.environment == environment))).first()
        return (row is not None, row[0] if row else None)

    async def check_run_deployment(self, repository: str, head_sha: str, environment: str) -> str | None:
        """The deployment the check run currently shows (the latest one written to it)."""
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(pr_check_runs.c.deployment_id).where(
                pr_check_runs.c.repository == repository, pr_check_runs.c.head_sha == head_sha,
                pr_check_runs.c.environment == environment))).first()
        return row[0] if row else None

    async def claim_check_run(self, repository: str, head_sha: str, environment: str, deployment_id: str) -> bool:
        """True when this call claimed the (repository, SHA, environment) slot first."""
        async with self.db.begin() as conn:
            insert: Any = dialect_insert(conn)
            result = await conn.execute(
                insert(pr_check_runs)
                .values(repository=repository, head_sha=head_sha, environment=environment,
                        deployment_id=deployment_id, updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["repository", "head_sha", "environment"])
            )
            return bool(result.rowcount == 1)

    async def set_check_run(self, repository: str, head_sha: str, environment: str, *,
                            check_run_id: int | None = None, deployment_id: str | None = None) -> None:
        values: dict[str, Any] = {"updated_at": utcnow()}
        if check_run_id is not None:
            values["check_run_id"] = check_run_id
        if deployment_id is not None:
            values["deployment_id"] = deployment_id
        async with self.db.begin() as conn:
            await conn.execute(sa.update(pr_check_runs).where(
                pr_check_runs.c.repository == repository, pr_check_runs.c.head_sha == head_sha,
                pr_check_runs.c.environment == environment).values(**values))

    # -- the PR comment ------------------------------------------------------------------

    async def comment(self, repository: str, pull_request: int) -> tuple[bool, int | None, dict[str, Any]]:
        """(claimed?, comment_id, state) of the pull request's Flareship comment."""
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(pr_comments.c.comment_id, pr_comments.c.state).where(
                pr_comments.c.repository == repository, pr_comments.c.pull_request == pull_request))).first()
        if row is None:
            return False, None, {}
        return True, row[0], dict(row[1] or {})

    async def save_comment(self, repository: str, pull_request: int, *, state: dict[str, Any],
                           comment_id: int | None = None) -> None:
        """Upsert the state (and the id once known); an existing id is never overwritten by None."""
        now = utcnow()
        async with self.db.begin() as conn:
            insert: Any = dialect_insert(conn)
            stmt = insert(pr_comments).values(repository=repository, pull_request=pull_request,
                                              comment_id=comment_id, state=state, updated_at=now)
            update = {"state": state, "updated_at": now}
            if comment_id is not None:
                update["comment_id"] = comment_id
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=["repository", "pull_request"], set_=update))

    # -- GitHub deployments --------------------------------------------------------------

    async def github_deployment(self, deployment_id: str) -> tuple[bool, int | None, str | None]:
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(
                pr_github_deployments.c.github_deployment_id, pr_github_deployments.c.last_state).where(
                pr_github_deployments.c.deployment_id == deployment_id))).first()
        return (row is not None, row[0] if row else None, row[1] if row else None)

    async def claim_github_deployment(self, deployment_id: str, repository: str, environment: str) -> bool:
        async with self.db.begin() as conn:
            insert: Any = dialect_insert(conn)
            result = await conn.execute(
                insert(pr_github_deployments)
                .values(deployment_id=deployment_id, repository=repository, environment=environment,
                        updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["deployment_id"])
            )
            return bool(result.rowcount == 1)

    async def set_github_deployment(self, deployment_id: str, *, github_deployment_id: int | None = None,
                                    last_state: str | None = None) -> None:
        values: dict[str, Any] = {"updated_at": utcnow()}
        if github_deployment_id is not None:
            values["github_deployment_id"] = github_deployment_id
        if last_state is not None:
            values["last_state"] = last_state
        async with self.db.begin() as conn:
            await conn.execute(sa.update(pr_github_deployments).where(
                pr_github_deployments.c.deployment_id == deployment_id).values(**values))

    async def previous_successful_github_deployment(
        self, repository: str, environment: str, *, excluding: str
    ) -> tuple[str, int] | None:
        """The latest other GitHub deployment of this environment whose last state is success."""
        async with self.db.connect() as conn:
            row = (await conn.execute(
                sa.select(pr_github_deployments.c.deployment_id, pr_github_deployments.c.github_deployment_id)
                .where(pr_github_deployments.c.repository == repository,
                       pr_github_deployments.c.environment == environment,
                       pr_github_deployments.c.last_state == "success",
                       pr_github_deployments.c.deployment_id != excluding,
                       pr_github_deployments.c.github_deployment_id.is_not(None))
                .order_by(pr_github_deployments.c.updated_at.desc()).limit(1)
            )).first()
        return (row[0], row[1]) if row else None
