"""Buttons on Flareship's check runs (Retry, Roll back, Promote) and "Re-run": permission re-checked."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.github.reporter import CHECK_NAME_PREFIX
from handlers.webhooks import workflow
from handlers.webhooks.command_path import Claim, CommandPath, Trigger
from handlers.webhooks.commands import echo
from handlers.webhooks.events import CheckRunEvent, parse_event

log = logging.getLogger(__name__)

router = routing.Router()


def _ours(run: CheckRunEvent, ctx: Any) -> str | None:
    """The Flareship deployment id behind the check run, or None when it is not our run."""
    app_id = str(run.check_run.app.id if run.check_run.app and run.check_run.app.id is not None else "")
    ours = str(ctx.services.settings.github_app_id or "")
    if ours and app_id and app_id != ours:
        return None
    if not run.check_run.name.startswith(CHECK_NAME_PREFIX):
        return None
    external_id = run.check_run.external_id or ""
    if not external_id.startswith("dep_") or not workflow.ready(ctx):
        return None
    return external_id


class ButtonClick:
    """One click (or re-run request) on the run of deployment `deployment_id`, handled once per delivery."""

    def __init__(self, event: sansio.Event, run: CheckRunEvent, ctx: Any, deployment_id: str):
        self.run = run
        self.ctx = ctx
        self.repository = run.repository.full_name
        self.default_branch = run.repository.branch
        self.login = run.sender.login if run.sender else ""
        self.is_bot = run.sender is None or run.sender.is_bot
        self.deployment_id = deployment_id
        self.key = f"button:{self.repository}:{event.delivery_id}"
        self.engine: Any = ctx.services.engine

    async def handle(self, act: Any) -> None:
        """Claim the click, read the deployment and the policy, then `act(claim, path, deployment)`."""
        path = CommandPath(self.ctx, Trigger(self.repository, self.default_branch, None, self.login))
        async with path.claim(self.key) as claim:
            if claim is None or self.is_bot:
                return
            deployment = await self.engine.get(self.deployment_id)
            path.point_at(deployment.pull_request)  # refusals and notices go on the deployment's PR
            await path.config()
            await act(claim, path, deployment)

    async def allowed(self, claim: Claim, path: CommandPath, deployment: Any, action: str, environment: str, *,
                      sha: str | None = None) -> bool:
        if environment not in (await path.config()).environments:
            await claim.refuse(f"**{environment}** is not an environment in `.github/flareship.yml` any more.")
            return False
        is_fork = False
        number = deployment.pull_request
        if action in ("deploy", "promote") and number and deployment.trigger != "merge":
            is_fork = (await workflow.fetch_pull_request(await path.github(), self.repository, number)).is_fork
        return await claim.allowed(action, environment, sha=sha, is_fork=is_fork)

    async def redeploy(self, claim: Claim, path: CommandPath, deployment: Any, environment: str, trigger: str,
                       action: str = "deploy") -> None:
        sha = self.run.check_run.head_sha or deployment.sha
        if not await self.allowed(claim, path, deployment, action, environment, sha=sha):
            return
        redeployed = await workflow.request_deploy(
            self.engine, await path.config(), repository=self.repository, installation_id=path.installation_id,
            sha=sha, ref=deployment.ref, pull_request=deployment.pull_request, environment=environment,
            trigger=trigger, actor=self.login)
        await claim.started(redeployed)


@router.register("check_run", action="requested_action")
async def button_clicked(event: sansio.Event, ctx: Any) -> None:
    run = parse_event(CheckRunEvent, event)
    deployment_id = _ours(run, ctx) if run is not None else None
    if run is None or deployment_id is None:
        return
    identifier = (run.requested_action.identifier if run.requested_action else "").lower()
    click = ButtonClick(event, run, ctx, deployment_id)

    async def act(claim: Claim, path: CommandPath, deployment: Any) -> None:
        if identifier == "retry":
            if await click.allowed(claim, path, deployment, "retry", deployment.environment):
                await claim.started(await click.engine.retry(deployment.id))
        elif identifier == "rollback":
            if await click.allowed(claim, path, deployment, "rollback", deployment.environment):
                await claim.started(await click.engine.rollback(
                    deployment.id, actor=click.login, trigger="button", reason=f"Roll back clicked by @{click.login}"))
        elif identifier == "promote":
            target = ctx.services.reporter.promote_target(deployment)
            if not target:
                await claim.refuse(f"there is no environment to promote **{deployment.environment}** to.")
            else:
                await click.redeploy(claim, path, deployment, target, "button", action="promote")
        else:
            await claim.refuse(f"unknown action `{echo(identifier)}`.")

    await click.handle(act)


@router.register("check_run", action="rerequested")
async def run_rerequested(event: sansio.Event, ctx: Any) -> None:
    """"Re-run" on a Flareship check run deploys that SHA to that environment again."""
    run = parse_event(CheckRunEvent, event)
    deployment_id = _ours(run, ctx) if run is not None else None
    if run is None or deployment_id is None:
        return
    click = ButtonClick(event, run, ctx, deployment_id)

    async def act(claim: Claim, path: CommandPath, deployment: Any) -> None:
        await click.redeploy(claim, path, deployment, deployment.environment, "rerequest")

    await click.handle(act)
