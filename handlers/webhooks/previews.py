"""Pull requests' previews: deployed on opened/reopened/synchronize (trigger `push`), removed on closed.

The deploy goes through the one command path (bot/policy via `preview_flow`), claimed per PR and
head SHA, so a redelivery queues nothing twice. The removal needs no config: the record of what
Flareship created says what to delete (bot/engine/preview_cleanup.py); a failure is retried by
the sweep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gidgethub import routing, sansio

from bot.engine.preview_spec import preview_environment
from bot.store.previews import ACTIVE
from handlers.webhooks import workflow
from handlers.webhooks.command_path import CommandPath, Trigger
from handlers.webhooks.events import PullRequestChanged, PullRequestClosed, parse_event
from handlers.webhooks.preview_flow import active_preview_deployments, start_preview

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
async def pull_request_pushed(event: sansio.Event, ctx: Any) -> None:
    # synchronize also goes to head_moves, which warns about a malformed payload once.
    changed = parse_event(PullRequestChanged, event, quiet=event.data.get("action") == "synchronize")
    if changed is None or not workflow.ready(ctx):
        return
    pull, repository = changed.pull_request, changed.repository.full_name
    author = pull.user or changed.sender
    if author is None or not pull.head.sha:
        return
    path = CommandPath(ctx, Trigger(repository, changed.repository.branch, pull.number, author.login,
                                    is_bot=author.is_bot))
    try:
        config = await path.config()
    except workflow.ConfigProblem as exc:
        log.debug("no preview for %s#%s: %s", repository, pull.number, exc)
        return
    if not config.previews.enabled:
        return
    if config.previews.trigger != "push" and not await _missing(ctx, repository, pull.number):
        return  # trigger comment: only /deploy preview, or a push that restores a preview Cloudflare lost
    # Per delivery (a redelivery does nothing twice); a reopen deploys again the head it had.
    async with path.claim(f"preview:{repository}:{pull.number}:{event.delivery_id or pull.head.sha}",
                          environment=preview_environment(pull.number)) as claim:
        if claim is None:
            return
        pr = workflow.pull_request_of(pull, repository)
        await start_preview(path, claim, config, pr, login=author.login, trigger="push")


async def _missing(ctx: Any, repository: str, number: int) -> bool:
    """The sweep found the PR's recorded preview gone on Cloudflare: the next push redeploys it."""
    record = await ctx.services.previews.store.get(repository, number)
    return record is not None and record.state == ACTIVE and record.missing


@router.register("pull_request", action="closed")
async def pull_request_closed(event: sansio.Event, ctx: Any) -> None:
    closed = parse_event(PullRequestClosed, event, quiet=True)  # merges warns about a malformed one
    if closed is None:
        return
    cleaner = ctx.services.previews
    repository, number = closed.repository.full_name, closed.pull_request.number
    record = await cleaner.store.get(repository, number)
    if record is None or record.state == "removed":
        return
    reporter = ctx.services.reporter
    for deployment in await active_preview_deployments(ctx.services.engine, repository, number):
        reporter.note_cancel(deployment.id, "The pull request closed; its preview is removed.")
        try:
            await ctx.services.engine.cancel(deployment.id)
        except Exception as exc:
            log.info("could not cancel preview deployment %s: %s", deployment.id, exc)
    await _stopped(ctx.services.engine, repository, number)
    await reporter.drain(timeout=10)  # the cancelled deployment's last GitHub status lands before `inactive`
    if not await cleaner.remove(repository, number):
        ctx.services.preview_sweep.wake()  # it retries when the backoff allows


async def _stopped(engine: Any, repository: str, number: int, timeout: float = 30.0) -> None:
    """Wait (bounded) for cancelled preview deployments to stop between steps before deleting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not await active_preview_deployments(engine, repository, number):
            return
        await asyncio.sleep(0.1)  # polling the store: the run stops in another task, maybe another replica
