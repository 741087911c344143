"""The one path every pull-request command takes: claim, read the policy once, decide, finish.

Comments, check-run buttons, labels and merges differ only in where the command comes from and
what it asks of the engine. Each builds a `CommandPath` for its delivery (the typed trigger), and
for each command it handles opens `async with path.claim(key) as claim:`; the claim is None when
an earlier delivery already finished that command (a redelivery does nothing twice). Inside,
`claim.allowed(...)` decides with `bot.policy`, and `claim.refuse` / `claim.started` /
`claim.done` answer on the pull request and record the outcome in `bot.store.pr_state`. An
engine refusal (`FlareshipError`) or an unreadable config raised inside the block is refused there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from bot.engine import RepoConfig
from bot.errors import FlareshipError
from bot.github.pr_comment import CommentWriter, react
from bot.policy import Refused
from bot.store.pr_state import CommandRow, PullRequestState
from handlers.webhooks import workflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trigger:
    """Who asked for what, where: the parts of a typed event the protocol needs."""

    repository: str
    default_branch: str
    pull_request: int | None
    login: str
    is_bot: bool = False
    comment_id: int | None = None  # a comment command: reactions go on it
    #: Refusals are addressed to the person ("😕 @dev: ..."); a merge speaks of the merge instead.
    address: bool = True


class CommandPath:
    """One delivery's commands: the GitHub client and the default-branch config, each read once."""

    def __init__(self, ctx: Any, trigger: Trigger) -> None:
        services = ctx.services
        self.ctx = ctx
        self.trigger = trigger
        self.engine: Any = services.engine
        self.settings: Any = services.settings
        self.pr_state: PullRequestState = services.pr_state
        self.comments: CommentWriter = services.comments
        self.installation_id: int | None = ctx.installation_id
        self._gh: Any = None
        self._config: RepoConfig | None = None

    def point_at(self, pull_request: int | None) -> None:
        """Answer on this pull request (a button learns it from the deployment, after the claim)."""
        self.trigger = replace(self.trigger, pull_request=pull_request)

    async def github(self) -> Any:
        if self._gh is None:
            self._gh = await self.ctx.github()
        return self._gh

    async def config(self) -> RepoConfig:
        """`.github/flareship.yml` from the default branch (raises `workflow.ConfigProblem`)."""
        if self._config is None:
            self._config = await workflow.load_config(await self.github(), self.trigger.repository,
                                                      self.trigger.default_branch)
        return self._config

    async def notice(self, text: str) -> None:
        """The latest notice in the pull request's Flareship comment (logged when there is no PR)."""
        if self.trigger.pull_request:
            await self.comments.update(await self.github(), self.trigger.repository, self.trigger.pull_request,
                                       notice=text)
        else:
            log.info("%s: %s", self.trigger.repository, text)

    async def react(self, content: str) -> None:
        if self.trigger.comment_id:
            await react(await self.github(), self.trigger.repository, self.trigger.comment_id, content)

    @asynccontextmanager
    async def claim(self, key: str, *, environment: str | None = None,
                    refusal_prefix: str = "") -> AsyncIterator[Claim | None]:
        """Claim `key` (None when it is already finished); refuse engine and config errors raised inside."""
        trigger = self.trigger
        row, created = await self.pr_state.claim_command(
            key, repository=trigger.repository, pull_request=trigger.pull_request,
            comment_id=trigger.comment_id, environment=environment)
        if not created and row.outcome != "claimed":
            log.info("%s was already handled (%s)", key, row.outcome)
            yield None
            return
        claim = Claim(self, key, row, resumed=not created, refusal_prefix=refusal_prefix)
        try:
            yield claim
        except workflow.ConfigProblem as exc:
            await claim.refuse(str(exc))
        except FlareshipError as exc:
            await claim.refuse(f"{refusal_prefix}{workflow.refusal_text(exc)}", environment=environment)


class Claim:
    """One claimed command: decide, then finish it exactly once (refused, started or done)."""

    def __init__(self, path: CommandPath, key: str, row: CommandRow, *, resumed: bool,
                 refusal_prefix: str = "") -> None:
        self.path = path
        self.key = key
        self.row = row
        #: True when a previous attempt claimed it and stopped (a crash): look for what it made.
        self.resumed = resumed
        self.refusal_prefix = refusal_prefix

    async def allowed(self, action: str, environment: str, *, sha: str | None = None,
                      is_fork: bool = False, actor_login: str | None = None) -> bool:
        """May the trigger's person (or `actor_login`) do `action` on `environment`? Refuses when not."""
        path, trigger = self.path, self.path.trigger
        gh = await path.github()
        login = actor_login or trigger.login
        actor = await workflow.fetch_actor(gh, trigger.repository, login, is_bot=trigger.is_bot)
        decision = await workflow.check_policy(
            gh, path.engine, await path.config(), trigger.repository, action, environment, actor,
            sha=sha, pull_request=trigger.pull_request, is_fork=is_fork)
        if isinstance(decision, Refused):
            await self.refuse(f"{self.refusal_prefix}{decision.reason}", environment=environment)
            return False
        return True

    async def finish(self, outcome: str, *, notice: str | None = None, environment: str | None = None,
                     deployment_id: str | None = None) -> None:
        if notice:
            await self.path.notice(notice)
        await self.path.pr_state.finish_command(self.key, outcome=outcome, deployment_id=deployment_id,
                                                environment=environment)

    async def refuse(self, reason: str, *, environment: str | None = None) -> None:
        trigger = self.path.trigger
        await self.path.react("confused")
        to = f"@{trigger.login}: " if trigger.address and trigger.login else ""
        await self.finish("refused", notice=f"😕 {to}{reason}", environment=environment)

    async def started(self, deployment: Any, *, environment: str | None = None) -> None:
        """The engine took the work; the reporter answers when the deployment ends."""
        await self.finish("started", deployment_id=deployment.id, environment=environment or deployment.environment)

    async def done(self, text: str | None = None, *, environment: str | None = None) -> None:
        if text:
            await self.path.notice(text)
        await self.path.react("rocket")
        await self.finish("done", environment=environment)
