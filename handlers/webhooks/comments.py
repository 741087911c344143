"""Slash commands in pull-request comments: react, decide, hand the work to the engine, report back."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.engine import PrepareRequest, RepoConfig
from bot.engine.config import PREVIEW_ENVIRONMENT
from bot.policy import describe_lock
from handlers.webhooks import workflow
from handlers.webhooks.command_path import Claim, CommandPath, Trigger
from handlers.webhooks.commands import LOCK_REASON_CHARS, USAGE, Command, UsageError, parse_command
from handlers.webhooks.events import CommentCreated, parse_event
from handlers.webhooks.preview_commands import preview_command

log = logging.getLogger(__name__)

router = routing.Router()

#: Commands whose missing ENV means the config's default environment.
DEFAULTS_TO_ENVIRONMENT = frozenset({"deploy", "prepare", "validate"})


@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, ctx: Any) -> None:
    """Only new comments on pull requests; edits never re-run a command, bots are never obeyed."""
    data = event.data
    if not isinstance(data.get("issue"), dict) or "pull_request" not in data["issue"]:
        return
    comment = parse_event(CommentCreated, event)
    if comment is None:
        return
    author = comment.author
    if author is None or author.is_bot or comment.comment.user is None or comment.comment.user.is_bot:
        return
    parsed = parse_command(comment.comment.body)
    if parsed is None or not workflow.ready(ctx):
        return
    await CommentCommand(comment, ctx, parsed, author.login).run()


class CommentCommand:
    """One comment's command, from 👀 to the engine call (or the refusal)."""

    def __init__(self, comment: CommentCreated, ctx: Any, parsed: Command | UsageError, login: str):
        self.repository = comment.repository.full_name
        self.number = comment.issue.number
        self.comment_id = comment.comment.id
        self.body = comment.comment.body or ""
        self.login = login
        self.parsed = parsed
        self.path = CommandPath(ctx, Trigger(self.repository, comment.repository.branch, self.number, login,
                                             comment_id=self.comment_id))
        self.engine: Any = self.path.engine

    async def run(self) -> None:
        async with self.path.claim(f"comment:{self.repository}:{self.comment_id}") as claim:
            if claim is not None:
                await self.handle(claim)

    async def handle(self, claim: Claim) -> None:
        if isinstance(self.parsed, UsageError) and self.parsed.command is None:
            # Not a Flareship command at all: answer with usage, but no 👀 (it was not recognised).
            return await claim.finish("refused", notice=f"😕 {self.parsed.message}\n\n```\n{USAGE}\n```")
        # Also when resuming after a crash: GitHub answers 200 for a reaction that is already there.
        await self.path.react("eyes")
        if isinstance(self.parsed, Command) and self.parsed.name == "help":
            await self.path.notice(f"Flareship commands:\n\n```\n{USAGE}\n```")
            return await claim.finish("done")
        config = await self.path.config()
        previews = [PREVIEW_ENVIRONMENT] if config.previews.enabled else []
        command = parse_command(self.body, list(config.environments) + previews)
        if isinstance(command, UsageError):
            return await claim.refuse(command.render())
        assert command is not None  # the first parse found a command on the same line
        environment = command.environment
        if environment is None and command.name in DEFAULTS_TO_ENVIRONMENT:
            environment = config.default_env
        if environment == PREVIEW_ENVIRONMENT:  # the PR's own preview (handlers/webhooks/preview_commands.py)
            return await preview_command(self.path, claim, command, config, self.login)
        await getattr(self, f"do_{command.name}")(claim, command, config, environment)

    # -- commands ----------------------------------------------------------------------

    async def do_deploy(self, claim: Claim, command: Command, config: RepoConfig, environment: str) -> None:
        pr = await workflow.fetch_pull_request(await self.path.github(), self.repository, self.number)
        if claim.resumed and await self._adopt(claim, environment, pr.head_sha):
            return
        if pr.state != "open":
            return await claim.refuse("this pull request is closed; Flareship deploys open pull requests only.")
        if not await claim.allowed("deploy", environment, sha=pr.head_sha, is_fork=pr.is_fork):
            return
        deployment = await workflow.request_deploy(
            self.engine, config, repository=self.repository, installation_id=self.path.installation_id,
            sha=pr.head_sha, ref=pr.head_ref, pull_request=self.number, environment=environment,
            trigger="comment", actor=self.login, dry_run=command.dry_run,
        )
        await claim.started(deployment, environment=environment)

    async def _adopt(self, claim: Claim, environment: str, sha: str) -> bool:
        """After a crash mid-command: a deployment the engine already made for it is this command's."""
        for deployment in await self.engine.list(repository=self.repository, environment=environment, limit=20):
            if (deployment.pull_request == self.number and deployment.sha == sha and deployment.trigger == "comment"
                    and deployment.actor == self.login and deployment.created_at >= claim.row.created_at):
                await claim.started(deployment, environment=environment)
                return True
        return False

    async def do_prepare(self, claim: Claim, command: Command, config: RepoConfig, environment: str) -> None:
        pr = await workflow.fetch_pull_request(await self.path.github(), self.repository, self.number)
        if not await claim.allowed("prepare", environment, sha=pr.head_sha, is_fork=pr.is_fork):
            return
        prepared = await self.engine.prepare(PrepareRequest(
            environment=environment, repository=self.repository, ref=pr.head_ref, sha=pr.head_sha,
            installation_id=self.path.installation_id, pull_request=self.number, trigger="comment",
            actor=self.login, repo_config=config))
        checks = ", ".join(f"{k}: {v}" for k, v in (prepared.checks or {}).items()) or "all passed"
        cost = prepared.estimated_cost or {}
        monthly = cost.get("monthly") or cost.get("total") or cost
        await claim.done(f"🧪 `/prepare {environment}` for `{pr.head_sha[:7]}`: pre-flight {checks}; "
                         f"estimated cost {monthly}. Nothing was changed.", environment=environment)

    async def do_validate(self, claim: Claim, command: Command, config: RepoConfig, environment: str) -> None:
        if not await claim.allowed("validate", environment):
            return
        result = await self.engine.validate(environment, self.path.settings.cloudflare_credentials(environment))
        perms = result.get("permissions") or {}
        account = (result.get("accountInfo") or {}).get("name") or "the account"
        listed = ", ".join(f"{k} {'✅' if v else '❌'}" for k, v in perms.items())
        await claim.done(f"🔑 **{environment}** Cloudflare credentials are valid for {account}: {listed}.",
                         environment=environment)

    async def do_rollback(self, claim: Claim, command: Command, config: RepoConfig, environment: str) -> None:
        if not await claim.allowed("rollback", environment):
            return
        live = await self.engine.live_release(workflow.target_for(self.repository), environment)
        if live is None:
            return await claim.refuse(f"nothing is live on **{environment}**, so there is nothing to roll back.",
                                      environment=environment)
        rollback = await self.engine.rollback(live.deployment_id, target_version=command.version,
                                              actor=self.login, trigger="comment",
                                              reason=f"/rollback by @{self.login}")
        await claim.started(rollback, environment=environment)

    async def _latest(self, environment: str | None, statuses: tuple[str, ...]) -> Any:
        for deployment in await self.engine.list(repository=self.repository, environment=environment, limit=50):
            if deployment.pull_request == self.number and deployment.status in statuses:
                return deployment
        return None

    async def do_retry(self, claim: Claim, command: Command, config: RepoConfig, environment: str | None) -> None:
        failed = await self._latest(environment, ("failed",))
        if failed is None:
            where = f" on **{environment}**" if environment else ""
            return await claim.refuse(f"this pull request has no failed deployment{where} to retry.")
        if not await claim.allowed("retry", failed.environment):
            return
        await claim.started(await self.engine.retry(failed.id), environment=failed.environment)

    async def do_cancel(self, claim: Claim, command: Command, config: RepoConfig, environment: str | None) -> None:
        active = await self._latest(environment, ("queued", "initiated", "in_progress"))
        if active is None:
            return await claim.refuse("this pull request has no queued or running deployment to cancel.")
        if not await claim.allowed("cancel", active.environment):
            return
        await self.engine.cancel(active.id)
        await claim.done(f"⛔ Cancelling `{active.id}` on **{active.environment}** (it stops between steps).",
                         environment=active.environment)

    async def do_status(self, claim: Claim, command: Command, config: RepoConfig, environment: str | None) -> None:
        envs = [environment] if environment else sorted(config.environments)
        lines = []
        for env in envs:
            live = await self.engine.live_release(workflow.target_for(self.repository), env)
            lock = await workflow.current_lock(self.engine, self.repository, env)
            shown = f"runs `{(live.sha or '')[:7]}` (release `{live.id}`)" if live else "nothing live"
            text = f"- **{env}**: {shown}"
            if lock:
                text += f"; 🔒 {describe_lock(env, lock)}"
            lines.append(text)
        await claim.done("ℹ️ Status\n" + "\n".join(lines))

    async def do_lock(self, claim: Claim, command: Command, config: RepoConfig, environment: str) -> None:
        if not await claim.allowed("lock", environment):
            return
        await self.engine.lock(workflow.target_for(self.repository), environment, actor=self.login,
                               reason=command.reason)
        why = f": {command.reason}" if command.reason else ""
        shortened = f" (reason shortened to {LOCK_REASON_CHARS} characters)" if command.reason_shortened else ""
        await claim.done(f"🔒 **{environment}** is locked by @{self.login}{why}.{shortened} "
                         f"`/unlock {environment}` to release.", environment=environment)

    async def do_unlock(self, claim: Claim, command: Command, config: RepoConfig, environment: str) -> None:
        if not await claim.allowed("unlock", environment):
            return
        released = await self.engine.unlock(workflow.target_for(self.repository), environment, actor=self.login)
        text = (f"🔓 **{environment}** is unlocked by @{self.login}." if released
                else f"🔓 **{environment}** was not locked.")
        await claim.done(text, environment=environment)
