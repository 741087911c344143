"""Slash commands in pull-request comments: react, decide, hand the work to the engine, report back."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.errors import FlareshipError
from bot.github.reporter import react
from bot.policy import Refused, describe_lock
from handlers.webhooks import workflow
from handlers.webhooks.commands import USAGE, Command, UsageError, parse_command

log = logging.getLogger(__name__)

router = routing.Router()

#: Commands whose missing ENV means the config's default environment.
DEFAULTS_TO_ENVIRONMENT = frozenset({"deploy", "prepare", "validate"})


@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, ctx: Any) -> None:
    """Only new comments on pull requests; edits never re-run a command, bots are never obeyed."""
    data = event.data
    issue = data.get("issue") or {}
    if "pull_request" not in issue:
        return
    comment = data.get("comment") or {}
    sender = data.get("sender") or comment.get("user") or {}
    if workflow.is_bot(sender) or workflow.is_bot(comment.get("user")):
        return
    parsed = parse_command(comment.get("body"))
    if parsed is None or not workflow.ready(ctx):
        return
    runner = CommentCommand(event, ctx, parsed)
    await runner.run()


class CommentCommand:
    """One comment's command, from 👀 to the engine call (or the refusal)."""

    def __init__(self, event: sansio.Event, ctx: Any, parsed: Command | UsageError):
        data = event.data
        self.ctx = ctx
        self.services = ctx.services
        self.engine = ctx.services.engine
        self.reporter = ctx.services.reporter
        self.repository = data["repository"]["full_name"]
        self.default_branch = data["repository"].get("default_branch") or "main"
        self.number = int(data["issue"]["number"])
        self.comment_id = int(data["comment"]["id"])
        self.body = data["comment"].get("body") or ""
        self.login = (data.get("sender") or data["comment"]["user"])["login"]
        self.sender = data.get("sender") or data["comment"]["user"]
        self.installation_id = ctx.installation_id
        self.parsed = parsed
        self.key = f"comment:{self.repository}:{self.comment_id}"
        self.gh: Any = None

    async def run(self) -> None:
        store = self.reporter.store
        row, created = await store.claim_command(self.key, repository=self.repository, pull_request=self.number,
                                                 comment_id=self.comment_id)
        if not created and row.outcome != "claimed":
            log.info("comment %s was already handled (%s)", self.comment_id, row.outcome)
            return
        self.gh = await self.ctx.github()
        if isinstance(self.parsed, UsageError) and self.parsed.command is None:
            # Not a Flareship command at all: answer with usage, but no 👀 (it was not recognised).
            await self.notice(f"😕 {self.parsed.message}\n\n```\n{USAGE}\n```")
            await store.finish_command(self.key, outcome="refused")
            return
        # Also when resuming after a crash: GitHub answers 200 for a reaction that is already there.
        await react(self.gh, self.repository, self.comment_id, "eyes")
        if isinstance(self.parsed, Command) and self.parsed.name == "help":
            await self.notice(f"Flareship commands:\n\n```\n{USAGE}\n```")
            await store.finish_command(self.key, outcome="done")
            return
        try:
            config = await workflow.load_config(self.gh, self.repository, self.default_branch)
        except workflow.ConfigProblem as exc:
            return await self.refuse(str(exc))
        command = parse_command(self.body, list(config.environments))
        if isinstance(command, UsageError):
            return await self.refuse(command.render())
        environment = command.environment
        if environment is None and command.name in DEFAULTS_TO_ENVIRONMENT:
            environment = config.default_env
        handler = getattr(self, f"do_{command.name}")
        try:
            await handler(command, config, environment, resumed=not created)
        except FlareshipError as exc:
            await self.refuse(workflow.refusal_text(exc))

    # -- feedback ----------------------------------------------------------------------

    async def notice(self, text: str) -> None:
        await self.reporter.comments.update(self.gh, self.repository, self.number, notice=text)

    async def refuse(self, reason: str, *, environment: str | None = None) -> None:
        await react(self.gh, self.repository, self.comment_id, "confused")
        await self.notice(f"😕 @{self.login}: {reason}")
        await self.reporter.store.finish_command(self.key, outcome="refused", environment=environment)

    async def succeed(self, text: str | None, *, environment: str | None = None) -> None:
        if text:
            await self.notice(text)
        await react(self.gh, self.repository, self.comment_id, "rocket")
        await self.reporter.store.finish_command(self.key, outcome="done", environment=environment)

    async def allowed(self, action: str, config, environment: str, *, sha=None, is_fork=False) -> bool:
        actor = await workflow.fetch_actor(self.gh, self.repository, self.login, self.sender)
        decision = await workflow.check_policy(
            self.gh, self.engine, config, self.repository, action, environment, actor,
            sha=sha, pull_request=self.number, is_fork=is_fork,
        )
        if isinstance(decision, Refused):
            await self.refuse(decision.reason, environment=environment)
            return False
        return True

    # -- commands ----------------------------------------------------------------------

    async def do_deploy(self, command: Command, config, environment: str, *, resumed: bool) -> None:
        pr = await workflow.fetch_pull_request(self.gh, self.repository, self.number)
        if resumed:
            adopted = await self._adopt(environment, pr.head_sha)
            if adopted:
                return
        if pr.state != "open":
            return await self.refuse("this pull request is closed; Flareship deploys open pull requests only.")
        if not await self.allowed("deploy", config, environment, sha=pr.head_sha, is_fork=pr.is_fork):
            return
        deployment = await workflow.request_deploy(
            self.engine, config, repository=self.repository, installation_id=self.installation_id,
            sha=pr.head_sha, ref=pr.head_ref, pull_request=self.number, environment=environment,
            trigger="comment", actor=self.login, dry_run=command.dry_run,
        )
        await self.reporter.store.finish_command(self.key, outcome="started", deployment_id=deployment.id,
                                                 environment=environment)

    async def _adopt(self, environment: str, sha: str) -> bool:
        """After a crash mid-command: a deployment the engine already made for it is this command's."""
        row, _ = await self.reporter.store.claim_command(self.key, repository=self.repository)
        for deployment in await self.engine.list(repository=self.repository, environment=environment, limit=20):
            if (deployment.pull_request == self.number and deployment.sha == sha and deployment.trigger == "comment"
                    and deployment.actor == self.login and deployment.created_at >= row.created_at):
                await self.reporter.store.finish_command(self.key, outcome="started", deployment_id=deployment.id,
                                                         environment=environment)
                return True
        return False

    async def do_prepare(self, command: Command, config, environment: str, *, resumed: bool) -> None:
        pr = await workflow.fetch_pull_request(self.gh, self.repository, self.number)
        if not await self.allowed("prepare", config, environment, sha=pr.head_sha, is_fork=pr.is_fork):
            return
        from bot.engine import PrepareRequest

        prepared = await self.engine.prepare(PrepareRequest(
            environment=environment, repository=self.repository, ref=pr.head_ref, sha=pr.head_sha,
            installation_id=self.installation_id, pull_request=self.number, trigger="comment",
            actor=self.login, repo_config=config))
        checks = ", ".join(f"{k}: {v}" for k, v in (prepared.checks or {}).items()) or "all passed"
        cost = prepared.estimated_cost or {}
        monthly = cost.get("monthly") or cost.get("total") or cost
        await self.succeed(f"🧪 `/prepare {environment}` for `{pr.head_sha[:7]}`: pre-flight {checks}; "
                           f"estimated cost {monthly}. Nothing was changed.", environment=environment)

    async def do_validate(self, command: Command, config, environment: str, *, resumed: bool) -> None:
        if not await self.allowed("validate", config, environment):
            return
        result = await self.engine.validate(environment, self.services.settings.cloudflare_credentials(environment))
        perms = result.get("permissions") or {}
        account = (result.get("accountInfo") or {}).get("name") or "the account"
        listed = ", ".join(f"{k} {'✅' if v else '❌'}" for k, v in perms.items())
        await self.succeed(f"🔑 **{environment}** Cloudflare credentials are valid for {account}: {listed}.",
                           environment=environment)

    async def do_rollback(self, command: Command, config, environment: str, *, resumed: bool) -> None:
        if not await self.allowed("rollback", config, environment):
            return
        live = await self.engine.live_release(workflow.target_for(self.repository), environment)
        if live is None:
            return await self.refuse(f"nothing is live on **{environment}**, so there is nothing to roll back.",
                                     environment=environment)
        rollback = await self.engine.rollback(live.deployment_id, target_version=command.version,
                                              actor=self.login, trigger="comment",
                                              reason=f"/rollback by @{self.login}")
        await self.reporter.store.finish_command(self.key, outcome="started", deployment_id=rollback.id,
                                                 environment=environment)

    async def _latest(self, environment: str | None, statuses: tuple[str, ...]):
        for deployment in await self.engine.list(repository=self.repository, environment=environment, limit=50):
            if deployment.pull_request == self.number and deployment.status in statuses:
                return deployment
        return None

    async def do_retry(self, command: Command, config, environment: str | None, *, resumed: bool) -> None:
        failed = await self._latest(environment, ("failed", "rolled_back"))
        if failed is None:
            where = f" on **{environment}**" if environment else ""
            return await self.refuse(f"this pull request has no failed deployment{where} to retry.")
        if not await self.allowed("retry", config, failed.environment):
            return
        retried = await self.engine.retry(failed.id)
        await self.reporter.store.finish_command(self.key, outcome="started", deployment_id=retried.id,
                                                 environment=failed.environment)

    async def do_cancel(self, command: Command, config, environment: str | None, *, resumed: bool) -> None:
        active = await self._latest(environment, ("queued", "initiated", "in_progress"))
        if active is None:
            return await self.refuse("this pull request has no queued or running deployment to cancel.")
        if not await self.allowed("cancel", config, active.environment):
            return
        await self.engine.cancel(active.id)
        await self.succeed(f"⛔ Cancelling `{active.id}` on **{active.environment}** (it stops between steps).",
                           environment=active.environment)

    async def do_status(self, command: Command, config, environment: str | None, *, resumed: bool) -> None:
        envs = [environment] if environment else sorted(config.environments)
        lines = []
        for env in envs:
            live = await self.engine.live_release(workflow.target_for(self.repository), env)
            lock = await workflow.current_lock(self.engine, self.repository, env)
            text = f"- **{env}**: " + (f"runs `{(live.sha or '')[:7]}` (release `{live.id}`)" if live else "nothing live")
            if lock:
                text += f"; 🔒 {describe_lock(env, lock)}"
            lines.append(text)
        await self.succeed("ℹ️ Status\n" + "\n".join(lines))

    async def do_lock(self, command: Command, config, environment: str, *, resumed: bool) -> None:
        if not await self.allowed("lock", config, environment):
            return
        await self.engine.lock(workflow.target_for(self.repository), environment, actor=self.login,
                               reason=command.reason)
        why = f": {command.reason}" if command.reason else ""
        await self.succeed(f"🔒 **{environment}** is locked by @{self.login}{why}. `/unlock {environment}` to release.",
                           environment=environment)

    async def do_unlock(self, command: Command, config, environment: str, *, resumed: bool) -> None:
        if not await self.allowed("unlock", config, environment):
            return
        released = await self.engine.unlock(workflow.target_for(self.repository), environment, actor=self.login)
        text = (f"🔓 **{environment}** is unlocked by @{self.login}." if released
                else f"🔓 **{environment}** was not locked.")
        await self.succeed(text, environment=environment)
