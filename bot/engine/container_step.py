"""Step 4, uploading the container images: each one into the account's registry, pinned by digest.

An image named in the config is copied from its registry (bot/engine/images.py); the artifact's
OCI layout of an app with `build.image` is pushed tagged with the SHA (bot/engine/oci_layout.py).
What was pinned is kept per container in the step state, so a repeated step copies nothing and
step 5 configures each container application with its pinned image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.cloudflare.errors import CloudflareError
from bot.cloudflare.registry import ImageRef
from bot.engine import images, oci_layout
from bot.engine.appspec import BUILT_IMAGE, AppSpec, ContainerSpec
from bot.engine.artifacts import BuildSource
from bot.engine.failures import step_failure
from bot.engine.model import CONTAINER

if TYPE_CHECKING:
    from bot.engine.steps import StepContext


def containers_of(spec: AppSpec) -> list[ContainerSpec]:
    return list(spec.containers) or ([spec.container] if spec.container else [])


def _is_first(ctx: StepContext, container: ContainerSpec) -> bool:
    """The config's first container, whose image the state also keeps in `image` (older versions)."""
    return ctx.spec.container is not None and container.class_name == ctx.spec.container.class_name


def pinned_image(ctx: StepContext, container: ContainerSpec) -> str | None:
    """The image step 4 pinned for `container` (a state of an older version has the first only)."""
    entry = (ctx.state.containers or {}).get(container.class_name) or {}
    if entry.get("image"):
        return str(entry["image"])
    if _is_first(ctx, container):
        return ctx.state.image
    return None


async def upload_container(ctx: StepContext) -> str:
    """Every container's image into the account's registry, pinned by digest (wrangler: each entry)."""
    containers = containers_of(ctx.spec)
    if not containers:
        await ctx.log("No container configured")
        return "skipped"
    target = images.registry_target(ctx.settings.container_registry_url)
    for container in containers:
        pinned = pinned_image(ctx, container)
        if pinned:
            await ctx.log(f"Image of {container.class_name} already in the account's registry: {pinned}")
            continue
        if container.image.startswith(f"{BUILT_IMAGE}:") and ctx.spec.build is not None and ctx.build is not None:
            await _push_built_image(ctx, container, ctx.build, target)
            continue
        source = images.parse_image(container.image, step=CONTAINER)
        try:
            registry = await images.registry_client_for(ctx.client, ctx.clients, ctx.account_id, target)
            if ctx.dry_run:
                resolved = await images.resolve_digest(registry, source, target)
                await ctx.log(f"Dry run: {container.image} resolves to {resolved.digest}; nothing copied")
                continue
            copied = await images.ensure_in_registry(registry, source, target, ctx.account_id)
        except BaseException as exc:
            _registry_failed(ctx, target, exc)
            raise
        _pin_image(ctx, container, copied)
        await ctx.log(f"Image {container.image} pinned as {pinned_image(ctx, container)}")
    return "completed"


def _registry_failed(ctx: StepContext, target: images.RegistryTarget, exc: BaseException) -> None:
    """A registry failure drops the cached credentials (they may be why) and reads a Cloudflare error as step 4's."""
    images.forget_credentials(ctx.clients, ctx.account_id, target)
    if isinstance(exc, CloudflareError):
        raise step_failure(exc, CONTAINER) from None


def _pin_image(ctx: StepContext, container: ContainerSpec, pinned: ImageRef) -> None:
    image = images.configuration_image(pinned)
    entries = dict(ctx.state.containers or {})
    entries[container.class_name] = {**entries.get(container.class_name, {}), "image": image,
                                     "image_digest": pinned.digest}
    ctx.state.containers = entries
    if _is_first(ctx, container):
        ctx.state.image = image
        ctx.state.image_digest = pinned.digest


async def _push_built_image(ctx: StepContext, container: ContainerSpec, build: BuildSource,
                            target: images.RegistryTarget) -> None:
    """`build.image`: the artifact's OCI layout, pushed to the account's registry tagged with the SHA."""
    destination = oci_layout.built_destination(target, ctx.account_id, ctx.spec.name, ctx.deployment.sha)
    layout = (await build.output()).image or b""
    if ctx.dry_run:
        await ctx.log(f"Dry run: would push {build.build.image} ({len(layout)} bytes) as {destination}")
        return
    try:
        registry = await images.registry_client_for(ctx.client, ctx.clients, ctx.account_id, target)
        pinned = await oci_layout.push_layout(registry, layout, destination)
    except BaseException as exc:
        _registry_failed(ctx, target, exc)
        raise
    _pin_image(ctx, container, pinned)
    await ctx.log(f"Built image {build.build.image} pushed as {destination}, pinned as {pinned_image(ctx, container)}")
