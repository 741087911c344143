"""Buttons on Flareship's check runs (Retry, Roll back, Promote) and "Re-run": permission re-checked."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.errors import FlareshipError
from bot.github.reporter import CHECK_NAME_PREFIX
from bot.policy import Refused
from handlers.webhooks import workflow

log = logging.getLogger(__name__)

router = routing.Router()


def _ours(data: dict, ctx: Any) -> str | None:
    """The Flareship deployment id behind the check run, or None when it is not our run."""
    run = data.get("check_run") or {}
    app_id = str((run.get("app") or {}).get("id", ""))
    ours = str(ctx.services.settings.github_app_id or "")
    if ours and app_id and app_id != ours:
        return None
    if not str(run.get("name", "")).startswith(CHECK_NAME_PREFIX):
        return None
    external_id = run.get("external_id") or ""
    if not external_id.startswith("dep_") or not workflow.ready(ctx):
        return None
    return external_id


class ButtonClick:
    """One click (or re-run request), handled once per delivery."""

    def __init__(self, event: sansio.Event, ctx: Any, deployment_id: str):
        data = event.data
        self.ctx = ctx
        self.services = ctx.services
        self.engine = ctx.services.engine
        self.reporter = ctx.services.reporter
        self.repository = data["repository"]["full_name"]
        self.default_branch = data["repository"].get("default_branch") or "main"
        self.sender = data.get("sender") or {}
        self.login = self.sender.get("login", "")
        self.run = data["check_run"]
        self.deployment_id = deployment_id
        self.key = f"button:{self.repository}:{event.delivery_id}"
        self.gh: Any = None
        self.deployment: Any = None

    async def prepare(self) -> Any | None:
        store = self.reporter.store
        row, created = await store.claim_command(self.key, repository=self.repository)
        if not created and row.outcome != "claimed":
            return None
        if workflow.is_bot(self.sender):
            return None
        self.gh = await self.ctx.github()
        self.deployment = await self.engine.get(self.deployment_id)
        try:
            return await workflow.load_config(self.gh, self.repository, self.default_branch)
        except workflow.ConfigProblem as exc:
            await self.refuse(str(exc))
            return None

    async def refuse(self, reason: str) -> None:
        number = self.deployment.pull_request if self.deployment else None
        if number:
            await self.reporter.comments.update(self.gh, self.repository, number, notice=f"😕 @{self.login}: {reason}")
        else:
            log.info("button on %s refused: %s", self.deployment_id, reason)
        await self.reporter.store.finish_command(self.key, outcome="refused")

    async def allowed(self, action: str, config: Any, environment: str, *, sha: str | None = None) -> bool:
        if environment not in config.environments:
            await self.refuse(f"**{environment}** is not an environment in `.github/flareship.yml` any more.")
            return False
        is_fork = False
        number = self.deployment.pull_request
        if action in ("deploy", "promote") and number and self.deployment.trigger != "merge":
            is_fork = (await workflow.fetch_pull_request(self.gh, self.repository, number)).is_fork
        actor = await workflow.fetch_actor(self.gh, self.repository, self.login, self.sender)
        decision = await workflow.check_policy(self.gh, self.engine, config, self.repository, action, environment,
                                               actor, sha=sha, pull_request=number, is_fork=is_fork)
        if isinstance(decision, Refused):
            await self.refuse(decision.reason)
            return False
        return True

    async def started(self, deployment: Any) -> None:
        await self.reporter.store.finish_command(self.key, outcome="started", deployment_id=deployment.id,
                                                 environment=deployment.environment)

    async def redeploy(self, config: Any, environment: str, trigger: str, action: str = "deploy") -> None:
        sha = self.run.get("head_sha") or self.deployment.sha
        if not await self.allowed(action, config, environment, sha=sha):
            return
        deployment = await workflow.request_deploy(
            self.engine, config, repository=self.repository, installation_id=self.ctx.installation_id, sha=sha,
            ref=self.deployment.ref, pull_request=self.deployment.pull_request, environment=environment,
            trigger=trigger, actor=self.login)
        await self.started(deployment)


@router.register("check_run", action="requested_action")
async def button_clicked(event: sansio.Event, ctx: Any) -> None:
    deployment_id = _ours(event.data, ctx)
    if deployment_id is None:
        return
    identifier = ((event.data.get("requested_action") or {}).get("identifier") or "").lower()
    click = ButtonClick(event, ctx, deployment_id)
    config = await click.prepare()
    if config is None:
        return
    deployment = click.deployment
    try:
        if identifier == "retry":
            if await click.allowed("retry", config, deployment.environment):
                await click.started(await ctx.services.engine.retry(deployment.id))
        elif identifier == "rollback":
            if await click.allowed("rollback", config, deployment.environment):
                await click.started(await ctx.services.engine.rollback(
                    deployment.id, actor=click.login, trigger="button", reason=f"Roll back clicked by @{click.login}"))
        elif identifier == "promote":
            target = ctx.services.reporter.promote_target(deployment)
            if not target:
                await click.refuse(f"there is no environment to promote **{deployment.environment}** to.")
            else:
                await click.redeploy(config, target, "button", action="promote")
        else:
            await click.refuse(f"unknown action `{identifier}`.")
    except FlareshipError as exc:
        await click.refuse(workflow.refusal_text(exc))


@router.register("check_run", action="rerequested")
async def run_rerequested(event: sansio.Event, ctx: Any) -> None:
    """"Re-run" on a Flareship check run deploys that SHA to that environment again."""
    deployment_id = _ours(event.data, ctx)
    if deployment_id is None:
        return
    click = ButtonClick(event, ctx, deployment_id)
    config = await click.prepare()
    if config is None:
        return
    try:
        await click.redeploy(config, click.deployment.environment, "rerequest")
    except FlareshipError as exc:
        await click.refuse(workflow.refusal_text(exc))
