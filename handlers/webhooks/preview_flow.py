"""A pull request's preview through the one command path: decide, record, supersede, queue.

Used by `pull_request` opened/reopened/synchronize (trigger `push`) and by `/deploy preview`.
The safety model of README.md "Previews": no preview for a fork unless `previews.allow_forks`;
the person (the PR's author for a push, the commenter for a command) must meet the `from`
environment's `required_permission` (or be in its `allowed_users`); at most `previews.max` open
previews per repository, the PR over it told why. The preview is recorded (bot/store/previews.py)
after the engine prepared it and before it is queued, so nothing is created on Cloudflare that
the sweep does not know about.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.engine import DeployOptions, PrepareRequest, RepoConfig
from bot.engine.preview_spec import preview_environment
from bot.policy import EnvironmentRules, has_permission
from bot.store.previews import ACTIVE, REMOVED, REMOVING, PreviewStore
from handlers.webhooks import workflow
from handlers.webhooks.command_path import Claim, CommandPath

log = logging.getLogger(__name__)

NOT_FINAL = ("queued", "initiated", "in_progress")


def preview_store(path: CommandPath) -> PreviewStore:
    store: PreviewStore = path.ctx.services.previews.store
    return store


async def active_preview_deployments(engine: Any, repository: str, number: int) -> list[Any]:
    environment = preview_environment(number)
    return [d for d in await engine.list(repository=repository, environment=environment, limit=50)
            if d.status in NOT_FINAL]


async def supersede(path: CommandPath, number: int, sha: str) -> None:
    """A newer push cancels the PR's queued or running preview deployment (it is not queued behind)."""
    reporter = path.ctx.services.reporter
    for deployment in await active_preview_deployments(path.engine, path.trigger.repository, number):
        if deployment.sha == sha:
            continue
        if reporter is not None:
            reporter.note_cancel(deployment.id, f"Superseded by a newer push (`{sha[:7]}`).")
        try:
            await path.engine.cancel(deployment.id)
        except Exception as exc:  # finished meanwhile: nothing to stop
            log.info("could not cancel superseded preview deployment %s: %s", deployment.id, exc)


async def start_preview(path: CommandPath, claim: Claim, config: RepoConfig, pr: workflow.PullRequest, *,
                        login: str, trigger: str) -> None:
    """Decide and queue the preview deployment of `pr`'s head (refusals answered on the PR)."""
    previews, repository = config.previews, path.trigger.repository
    environment = preview_environment(pr.number)
    if not previews.enabled:
        return await claim.refuse("previews are not enabled in `.github/flareship.yml` (`previews.enabled`).")
    if pr.state != "open":
        return await claim.refuse("this pull request is closed; previews are for open pull requests.")
    if pr.is_fork and not previews.allow_forks:
        return await claim.refuse("No preview for a pull request from a fork: it would run the fork's code with "
                                  "this repository's Cloudflare bindings (`previews.allow_forks` is off).")
    gh = await path.github()
    actor = await workflow.fetch_actor(gh, repository, login, is_bot=path.trigger.is_bot)
    rules = EnvironmentRules.from_config(previews.from_, config.environments.get(previews.from_) or {})
    if actor.is_bot or not has_permission(actor, rules, "deploy"):
        hint = " Someone who has it can comment `/deploy preview`." if trigger == "push" else ""
        return await claim.refuse(f"No preview: @{login} has {actor.role or 'no'} access to this repository; a "
                                  f"preview (from **{previews.from_}**) needs {rules.required_permission}.{hint}")
    store = preview_store(path)
    existing = await store.get(repository, pr.number)
    if existing is None or existing.state != ACTIVE:
        open_previews = await store.count_active(repository, excluding=pr.number)
        if open_previews >= previews.max:
            return await claim.refuse(
                f"No preview: this repository already has {open_previews} open previews, the most `previews.max` "
                f"allows ({previews.max}). A preview is removed when its pull request closes.")
    await supersede(path, pr.number, pr.head_sha)
    engine = path.engine
    prepared = await engine.prepare(PrepareRequest(
        environment=environment, repository=repository, ref=pr.head_ref, sha=pr.head_sha,
        installation_id=path.installation_id, pull_request=pr.number, trigger=trigger, actor=login,
        repo_config=config), refuse_if_busy=False)
    preview = prepared.config.get("preview") or {}
    if existing is not None and existing.state != REMOVED and (
            existing.state == REMOVING or existing.script_name != prepared.script_name
            or existing.mode != preview.get("mode") or existing.environment != previews.from_):
        # A removal still to finish, or the previews config changed (mode, `from`): the old one goes first.
        cleaner = path.ctx.services.previews
        if cleaner is None or not await cleaner.remove(repository, pr.number):
            return await claim.refuse("the previous preview of this pull request is still being removed; "
                                      "push again (or comment `/deploy preview`) in a minute.")
    await store.record(
        repository, pr.number, installation_id=path.installation_id, mode=str(preview.get("mode") or previews.mode),
        environment=previews.from_, account_id=path.settings.cloudflare_credentials(previews.from_).account_id,
        script_name=prepared.script_name, preview_name=str(preview.get("name") or f"pr-{pr.number}"),
        container_apps=[str(c["application_name"]) for c in prepared.config.get("containers") or []]
        if preview.get("mode") == "script" else [])
    # A preview is redeployed by the next push, never rolled back onto an older one.
    deployment = await engine.deploy(prepared.id, DeployOptions(rollback_on_failure=False))
    await claim.started(deployment, environment=environment)
