"""The restore steps of a rollback, and returning an environment to a release after a failure.

Rollback deployments run the same 8 named steps as a deployment (`steps.py`); most have nothing
to do. A release is restored container image first, then Worker version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from bot.cloudflare.errors import CloudflareError, Conflict
from bot.engine.failures import step_failure
from bot.engine.model import (
    AUTHENTICATE,
    CONTAINER,
    DURABLE_OBJECTS,
    HEALTH,
    RESOURCES,
    ROUTES,
    VALIDATE,
    WORKER,
    Release,
    ReleaseContainer,
)
from bot.engine.state import StepState
from bot.engine.steps import StepContext, authenticate, health_check, workers_url
from bot.errors import FlareshipError


def migration_guard(target: Release, live_tag: str | None) -> str | None:
    """Why restoring `target` is refused (None when allowed): it would cross a DO migration."""
    if (target.migration_tag or None) != (live_tag or None):
        return (f"release {target.id} was deployed at Durable Object migration tag {target.migration_tag or 'none'}, "
                f"the live Worker is at {live_tag or 'none'}; restoring it would cross a migration, "
                "which Cloudflare cannot undo")
    return None


async def _restore_application(ctx: StepContext, app_id: str, image: str, release_id: str) -> None:
    app = await ctx.client.get_application(ctx.account_id, app_id)
    current = app.get("configuration") or {}
    configuration = {**{k: v for k, v in current.items() if k in ("instance_type", "observability")},
                     "image": image}
    if current.get("image") != image:
        app = await ctx.client.patch_application(ctx.account_id, app_id, {"configuration": configuration})
    await ctx.client.create_rollout(ctx.account_id, app_id, configuration,
                                    description=f"Flareship rollback to {release_id}",
                                    max_instances=int(app.get("max_instances") or 1))
    await ctx.log(f"Container image restored to {image}")


def release_containers(state: StepState) -> list[ReleaseContainer]:
    """What a release records of a deployment's containers: every application steps 4-5 left."""
    return [ReleaseContainer(class_name=name, app_id=str(entry["app_id"]), image=str(entry["image"]),
                             image_digest=entry.get("image_digest"))
            for name, entry in (state.containers or {}).items() if entry.get("app_id") and entry.get("image")]


def containers_of(target: Release) -> list[ReleaseContainer]:
    """`target`'s containers; a release copied into a document before they were recorded has its first."""
    if target.containers:
        return list(target.containers)
    if target.image and target.container_app_id:
        return [ReleaseContainer(app_id=target.container_app_id, image=target.image,
                                 image_digest=target.image_digest)]
    return []


async def restore_container(ctx: StepContext, target: Release) -> None:
    """Every container application of `target` back to the image the release recorded for it."""
    for container in containers_of(target):
        await _restore_application(ctx, container.app_id, container.image, target.id)


async def restore_worker(ctx: StepContext, target: Release) -> None:
    if not target.version_id:
        raise FlareshipError("DEPLOY_007", f"release {target.id} has no Worker version")
    live = await ctx.client.deployed_version(ctx.account_id, target.script_name)
    if live != target.version_id:
        try:
            await ctx.client.create_deployment(ctx.account_id, target.script_name, target.version_id,
                                               message=f"Rollback to {target.id}")
        except Conflict as exc:
            if 10220 not in exc.codes:
                raise
            await ctx.client.create_deployment(ctx.account_id, target.script_name, target.version_id,
                                               message=f"Rollback to {target.id}", force=True)
    await ctx.log(f"Worker version {target.version_id} deployed at 100%")


@contextmanager
def _rollback_failure(step: str | None = None) -> Iterator[None]:
    """Any failure while restoring a release is DEPLOY_007 (at `step`, when a step restores it)."""
    try:
        yield
    except CloudflareError as exc:
        raise FlareshipError("DEPLOY_007", f"Rollback failed: {exc.public_message()}", step=step) from None
    except FlareshipError as exc:
        if exc.code != "DEPLOY_007":
            raise FlareshipError("DEPLOY_007", f"Rollback failed: {exc.message}", step=step) from None
        exc.step = exc.step or step  # a refusal keeps its own status
        raise


async def restore_release(ctx: StepContext, target: Release, *, check_guard: bool = True) -> None:
    """Container image, then Worker version, of `target` (DEPLOY_007 on any failure)."""
    with _rollback_failure():
        if check_guard:
            _exists, live_tag = await ctx.client.script_state(ctx.account_id, target.script_name)
            reason = migration_guard(target, live_tag)
            if reason:
                raise FlareshipError("DEPLOY_007", f"Rollback refused: {reason}", variant="refused")
        await restore_container(ctx, target)
        await restore_worker(ctx, target)


async def rollback_validate(ctx: StepContext) -> str:
    target = ctx.deployment.rollback_target
    if target is None:
        raise FlareshipError("DEPLOY_007", "no release to roll back to", step=VALIDATE)
    try:
        _exists, live_tag = await ctx.client.script_state(ctx.account_id, target.script_name)
    except CloudflareError as exc:
        raise step_failure(exc, VALIDATE) from None
    reason = migration_guard(target, live_tag)
    if reason:
        raise FlareshipError("DEPLOY_007", f"Rollback refused: {reason}", step=VALIDATE, variant="refused")
    await ctx.log(f"Restoring release {target.id} (version {target.version_id}, image {target.image or 'none'})")
    return "completed"


async def rollback_skip(ctx: StepContext) -> str:
    return "skipped"


async def rollback_container(ctx: StepContext) -> str:
    target = ctx.deployment.rollback_target
    if target is None or not containers_of(target):
        return "skipped"
    with _rollback_failure(DURABLE_OBJECTS):
        await restore_container(ctx, target)
    return "completed"


async def rollback_worker(ctx: StepContext) -> str:
    target = ctx.deployment.rollback_target
    if target is None:  # step 1 refused it already
        raise FlareshipError("DEPLOY_007", "no release to roll back to", step=WORKER)
    with _rollback_failure(WORKER):
        await restore_worker(ctx, target)
    ctx.state.version_id = target.version_id
    ctx.state.image = target.image
    ctx.state.image_digest = target.image_digest
    ctx.state.container_app_id = target.container_app_id
    ctx.state.containers = {c.class_name or c.app_id: {"image": c.image, "image_digest": c.image_digest,
                                                        "app_id": c.app_id} for c in containers_of(target)}
    ctx.state.migration_tag = target.migration_tag
    return "completed"


async def rollback_url(ctx: StepContext) -> str:
    try:
        subdomain = await ctx.client.get_account_subdomain(ctx.account_id)
    except CloudflareError as exc:
        raise step_failure(exc, ROUTES) from None
    url = ctx.spec.url or workers_url(ctx.settings.workers_url_template, ctx.spec.script_name, subdomain or "")
    ctx.state.url = url
    return "skipped"


ROLLBACK_PIPELINE: dict[str, Callable[[StepContext], Awaitable[str]]] = {
    VALIDATE: rollback_validate,
    AUTHENTICATE: authenticate,
    RESOURCES: rollback_skip,
    CONTAINER: rollback_skip,
    DURABLE_OBJECTS: rollback_container,
    WORKER: rollback_worker,
    ROUTES: rollback_url,
    HEALTH: health_check,
}
