"""`deploy:<env>` labels on open pull requests: the same checks as a comment, then the label goes."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from gidgethub import HTTPException, routing, sansio

from bot.errors import FlareshipError
from bot.policy import Refused
from handlers.webhooks import workflow

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="labeled")
async def label_added(event: sansio.Event, ctx: Any) -> None:
    data = event.data
    label = ((data.get("label") or {}).get("name") or "").strip()
    pull = data.get("pull_request") or {}
    sender = data.get("sender") or {}
    if ":" not in label or pull.get("state") != "open" or workflow.is_bot(sender) or not workflow.ready(ctx):
        return
    repository = data["repository"]["full_name"]
    default_branch = data["repository"].get("default_branch") or "main"
    number = int(pull["number"])
    services = ctx.services
    store = services.reporter.store
    gh = await ctx.github()
    try:
        config = await workflow.load_config(gh, repository, default_branch)
    except workflow.ConfigProblem as exc:
        log.info("label %s on %s#%s ignored: %s", label, repository, number, exc)
        return
    prefix = config.labels.prefix
    if not label.lower().startswith(prefix.lower()):
        return
    wanted = label[len(prefix):].strip()
    environment = next((env for env in config.environments if env.lower() == wanted.lower()), None)
    key = f"label:{repository}:{event.delivery_id}"
    row, created = await store.claim_command(key, repository=repository, pull_request=number,
                                             environment=environment)
    if not created and row.outcome != "claimed":
        return
    login = sender.get("login", "")
    comments = services.reporter.comments
    try:
        if environment is None:
            known = ", ".join(sorted(config.environments))
            await comments.update(gh, repository, number, notice=(
                f"😕 @{login}: the label `{label}` names no environment of this repository ({known})."))
            await store.finish_command(key, outcome="refused")
            return
        pr = workflow.pull_request_from(pull, repository)
        actor = await workflow.fetch_actor(gh, repository, login, sender)
        decision = await workflow.check_policy(gh, services.engine, config, repository, "deploy", environment,
                                               actor, sha=pr.head_sha, pull_request=number, is_fork=pr.is_fork)
        if isinstance(decision, Refused):
            await comments.update(gh, repository, number, notice=f"😕 @{login}: {decision.reason}")
            await store.finish_command(key, outcome="refused", environment=environment)
            return
        try:
            deployment = await workflow.request_deploy(
                services.engine, config, repository=repository, installation_id=ctx.installation_id,
                sha=pr.head_sha, ref=pr.head_ref, pull_request=number, environment=environment,
                trigger="label", actor=login)
        except FlareshipError as exc:
            await comments.update(gh, repository, number, notice=f"😕 @{login}: {workflow.refusal_text(exc)}")
            await store.finish_command(key, outcome="refused", environment=environment)
            return
        await store.finish_command(key, outcome="started", deployment_id=deployment.id, environment=environment)
    finally:
        await remove_label(gh, repository, number, label)


async def remove_label(gh: Any, repository: str, number: int, label: str) -> None:
    """Take the label off so it can be applied again (already gone is fine)."""
    owner, name = workflow.split(repository)
    try:
        await gh.delete(f"/repos/{{owner}}/{{repo}}/issues/{{issue_number}}/labels/{quote(label, safe='')}",
                        {"owner": owner, "repo": name, "issue_number": number})
    except HTTPException as exc:
        if int(exc.status_code) != 404:
            log.warning("could not remove label %s from %s#%s: %s", label, repository, number, exc)
