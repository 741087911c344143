"""Merges into the default branch deploy the merge commit to every `auto_deploy` environment.

The person who merged is checked like a commenter (`bot.policy`, action `merge`: the
environment's `required_permission` or `allowed_users`); the merge itself stands for the review,
so no approval or checks gate applies, and locks are the engine's refusal as for any deploy.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from handlers.webhooks import workflow
from handlers.webhooks.command_path import CommandPath, Trigger
from handlers.webhooks.events import PullRequestClosed, parse_event

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="closed")
async def pull_request_closed(event: sansio.Event, ctx: Any) -> None:
    closed = parse_event(PullRequestClosed, event)
    if closed is None:
        return
    pull, repository, default_branch = closed.pull_request, closed.repository.full_name, closed.repository.branch
    sha = pull.merge_commit_sha
    if not pull.merged or not sha or pull.base.ref != default_branch or not workflow.ready(ctx):
        return
    merger = pull.merged_by or closed.sender
    login = merger.login if merger else ""
    # A bot that merges (a merge queue, auto-merge) is judged by its permission, not refused as a bot.
    path = CommandPath(ctx, Trigger(repository, default_branch, pull.number, login, address=False))
    try:
        config = await path.config()
    except workflow.ConfigProblem as exc:
        log.info("merge of %s#%s deploys nothing: %s", repository, pull.number, exc)
        return
    for environment, env_config in config.environments.items():
        if not env_config.auto_deploy:
            continue
        async with path.claim(f"merge:{repository}:{sha}:{environment}", environment=environment,
                              refusal_prefix=f"The merge was not deployed to **{environment}**: ") as claim:
            if claim is None:
                continue
            live = await path.engine.live_release(workflow.target_for(repository), environment)
            if live is not None and live.sha == sha:
                log.info("%s already runs %s; merge deploy skipped", environment, sha[:7])
                await claim.finish("done")
                continue
            if not login:
                await claim.refuse("GitHub did not say who merged, so no permission could be checked.")
                continue
            if not await claim.allowed("merge", environment, sha=sha):
                continue
            await claim.started(await workflow.request_deploy(
                path.engine, config, repository=repository, installation_id=path.installation_id, sha=sha,
                ref=default_branch, pull_request=pull.number, environment=environment, trigger="merge",
                actor=login))
