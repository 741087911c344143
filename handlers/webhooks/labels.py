"""`deploy:<env>` labels on open pull requests: the same checks as a comment, then the label goes."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from gidgethub import HTTPException, routing, sansio

from handlers.webhooks import workflow
from handlers.webhooks.command_path import CommandPath, Trigger
from handlers.webhooks.events import LabelAdded, parse_event

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("pull_request", action="labeled")
async def label_added(event: sansio.Event, ctx: Any) -> None:
    labeled = parse_event(LabelAdded, event)
    if labeled is None:
        return
    label, pull, sender = labeled.label.name, labeled.pull_request, labeled.sender
    if ":" not in label or pull.state != "open" or sender is None or sender.is_bot or not workflow.ready(ctx):
        return
    repository, number = labeled.repository.full_name, pull.number
    path = CommandPath(ctx, Trigger(repository, labeled.repository.branch, number, sender.login))
    try:
        config = await path.config()
    except workflow.ConfigProblem as exc:
        log.info("label %s on %s#%s ignored: %s", label, repository, number, exc)
        return
    prefix = config.labels.prefix
    if not label.lower().startswith(prefix.lower()):
        return
    wanted = label[len(prefix):].strip()
    environment = next((env for env in config.environments if env.lower() == wanted.lower()), None)
    try:
        async with path.claim(f"label:{repository}:{event.delivery_id}", environment=environment) as claim:
            if claim is None:
                return
            if environment is None:
                known = ", ".join(sorted(config.environments))
                return await claim.refuse(f"the label `{label}` names no environment of this repository ({known}).")
            pr = workflow.pull_request_of(pull, repository)
            if not await claim.allowed("deploy", environment, sha=pr.head_sha, is_fork=pr.is_fork):
                return
            await claim.started(await workflow.request_deploy(
                path.engine, config, repository=repository, installation_id=path.installation_id,
                sha=pr.head_sha, ref=pr.head_ref, pull_request=number, environment=environment,
                trigger="label", actor=sender.login))
    finally:
        await remove_label(await path.github(), repository, number, label)


async def remove_label(gh: Any, repository: str, number: int, label: str) -> None:
    """Take the label off so it can be applied again (already gone is fine)."""
    owner, name = workflow.split(repository)
    try:
        await gh.delete(f"/repos/{{owner}}/{{repo}}/issues/{{issue_number}}/labels/{quote(label, safe='')}",
                        {"owner": owner, "repo": name, "issue_number": number})
    except HTTPException as exc:
        if int(exc.status_code) != 404:
            log.warning("could not remove label %s from %s#%s: %s", label, repository, number, exc)
