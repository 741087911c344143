"""Merges into the default branch deploy the merge commit to every `auto_deploy` environment."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.errors import FlareshipError
from handlers.webhooks import workflow

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="closed")
async def pull_request_closed(event: sansio.Event, ctx: Any) -> None:
    """The merge is the approval: no role check, but locks and the engine's checks still apply."""
    data = event.data
    pull = data.get("pull_request") or {}
    repository = data["repository"]["full_name"]
    default_branch = data["repository"].get("default_branch") or "main"
    sha = pull.get("merge_commit_sha")
    if not pull.get("merged") or not sha or (pull.get("base") or {}).get("ref") != default_branch:
        return
    if not workflow.ready(ctx):
        return
    number = int(pull["number"])
    services = ctx.services
    store = services.reporter.store
    gh = await ctx.github()
    try:
        config = await workflow.load_config(gh, repository, default_branch)
    except workflow.ConfigProblem as exc:
        log.info("merge of %s#%s deploys nothing: %s", repository, number, exc)
        return
    actor = (pull.get("merged_by") or data.get("sender") or {}).get("login")
    for environment, env_config in config.environments.items():
        if not env_config.auto_deploy:
            continue
        key = f"merge:{repository}:{sha}:{environment}"
        row, created = await store.claim_command(key, repository=repository, pull_request=number,
                                                 environment=environment)
        if not created and row.outcome != "claimed":
            continue
        live = await services.engine.live_release(workflow.target_for(repository), environment)
        if live is not None and live.sha == sha:
            log.info("%s already runs %s; merge deploy skipped", environment, sha[:7])
            await store.finish_command(key, outcome="done")
            continue
        try:
            deployment = await workflow.request_deploy(
                services.engine, config, repository=repository, installation_id=ctx.installation_id, sha=sha,
                ref=default_branch, pull_request=number, environment=environment, trigger="merge", actor=actor)
        except FlareshipError as exc:
            await services.reporter.comments.update(
                gh, repository, number,
                notice=f"😕 The merge was not deployed to **{environment}**: {workflow.refusal_text(exc)}")
            await store.finish_command(key, outcome="refused")
            continue
        await store.finish_command(key, outcome="started", deployment_id=deployment.id)
