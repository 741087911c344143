"""`/deploy preview`, `/status preview`, `/cancel preview`: the comment commands on a PR's own preview.

They take the one command path like every command: `/deploy preview` decides as an automatic
preview does (bot/policy, fork and `max` rules) with the commenter as the person, so a writer can
start the preview of a PR whose author could not; `/cancel preview` stops the PR's queued or
running preview deployment; `/status preview` answers with its URL and state.
"""

from __future__ import annotations

from bot.engine import RepoConfig
from bot.engine.preview_spec import preview_environment
from handlers.webhooks import workflow
from handlers.webhooks.command_path import Claim, CommandPath
from handlers.webhooks.commands import Command
from handlers.webhooks.preview_flow import active_preview_deployments, preview_store, start_preview

#: Commands a preview takes (the others name an environment, which a preview is not).
PREVIEW_COMMANDS = ("deploy", "status", "cancel")


async def preview_command(path: CommandPath, claim: Claim, command: Command, config: RepoConfig, login: str) -> None:
    number = path.trigger.pull_request
    if command.name not in PREVIEW_COMMANDS or number is None:
        return await claim.refuse(f"`/{command.name} preview` is not a command: a preview takes `/deploy preview`, "
                                  "`/status preview` and `/cancel preview`.")
    if command.name == "deploy":
        if command.dry_run:
            return await claim.refuse("`/deploy preview` has no dry run; a preview changes nothing shared.")
        pr = await workflow.fetch_pull_request(await path.github(), path.trigger.repository, number)
        return await start_preview(path, claim, config, pr, login=login, trigger="comment")
    if command.name == "cancel":
        return await _cancel(path, claim, number)
    return await _status(path, claim, number)


async def _cancel(path: CommandPath, claim: Claim, number: int) -> None:
    active = await active_preview_deployments(path.engine, path.trigger.repository, number)
    if not active:
        return await claim.refuse("this pull request's preview has no queued or running deployment to cancel.")
    if not await claim.allowed("cancel", preview_environment(number)):
        return
    for deployment in active:
        await path.engine.cancel(deployment.id)
    ids = ", ".join(f"`{d.id}`" for d in active)
    await claim.done(f"⛔ Cancelling {ids} of the **preview** (it stops between steps).",
                     environment=preview_environment(number))


async def _status(path: CommandPath, claim: Claim, number: int) -> None:
    record = await preview_store(path).get(path.trigger.repository, number)
    active = await active_preview_deployments(path.engine, path.trigger.repository, number)
    if record is None:
        text = "no preview has been deployed for this pull request"
    elif record.state != "active":
        text = f"`{record.preview_name}` was {record.state}"
    elif record.missing:
        text = f"`{record.preview_name}` is gone on Cloudflare; the next push (or `/deploy preview`) redeploys it"
    else:
        where = record.url or "not deployed yet"
        text = f"`{record.preview_name}` ({record.mode} mode) at {where}"
        if record.deployment_url:
            text += f"; this push: {record.deployment_url}"
    if active:
        text += f"; deploying `{active[0].sha[:7] if active[0].sha else '?'}` ({active[0].status})"
    await claim.done(f"ℹ️ Status\n- **preview**: {text}")
