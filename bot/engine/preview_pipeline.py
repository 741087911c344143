"""Steps 4-8 of a deployment to a Worker Preview (`previews.mode: previews`), as wrangler's `preview` does.

Steps 1-3 are the normal ones (configuration, token, resources). Then: no container (a Worker
Preview runs none; bot/engine/preview_app.py refuses them); step 5 makes sure the Preview
`pr-<N>` exists (GET, POST on 10025) under the `from` environment's Worker, which must have been
deployed first, with the observability, logpush and tail consumers wrangler would give it;
step 6 uploads the PR's static assets through the parent Worker's upload session, then its
modules as a Preview deployment with the preview's own bindings (Durable Objects without
namespace ids: Cloudflare gives each Preview its own storage; the parent's secrets only as
`inherit` when wrangler's previews block says so, and the dashboard's base config is ignored
otherwise); step 7 records the stable Preview URL and this deployment's own
URL; step 8 probes this deployment's URL. Every step is safe to repeat: the Preview is looked
up before it is created, and the upload carries the deployment id as its tag, so a lost answer
is read back instead of deploying twice.
"""

from __future__ import annotations

from typing import Any

from bot.cloudflare.errors import CloudflareError, ParentWorkerMissing
from bot.cloudflare.previews import Preview, build_preview_metadata, preview_migrations, preview_settings
from bot.cloudflare.workers import WorkerModule
from bot.engine.assets_step import assets_metadata
from bot.engine.failures import step_failure
from bot.engine.metadata import upload_modules
from bot.engine.model import CONTAINER, DURABLE_OBJECTS, HEALTH, ROUTES, WORKER
from bot.engine.preview_spec import PreviewSpec
from bot.engine.preview_steps import Pipeline
from bot.engine.steps import StepContext, probe_health
from bot.errors import FlareshipError
from bot.github.pr_comment import DEPLOYMENT_URL_KEY

#: Keys this pipeline keeps in the step state (`StepState.extra` survives a restart).
PREVIEW_ID, PREVIEW_URL, DEPLOYMENT_ID, DEPLOYMENT_URL = "preview_id", "preview_url", "preview_deployment_id", \
    "preview_deployment_url"
#: The Preview as step 5 found it (id, name, slug, urls), so step 6 need not look it up again.
PREVIEW = "preview"


def _preview(ctx: StepContext) -> PreviewSpec:
    if ctx.spec.preview is None:
        raise FlareshipError("SYS_001", "not a preview deployment")
    return ctx.spec.preview


def _parent_missing(ctx: StepContext, step: str) -> FlareshipError:
    preview = _preview(ctx)
    return FlareshipError("DEPLOY_002", f"the Worker {preview.parent_script} of {preview.from_environment} does not "
                          f"exist yet; deploy {preview.from_environment} once before its previews", step=step,
                          details={"worker": preview.parent_script})


async def no_container(ctx: StepContext) -> str:
    await ctx.log("A Worker Preview runs no container")
    return "skipped"


async def ensure_preview(ctx: StepContext) -> str:
    preview = _preview(ctx)
    if ctx.dry_run:
        await ctx.log(f"Dry run: would create the Preview {preview.name} of {preview.parent_script} if missing")
        return "completed"
    try:
        found = await ctx.client.ensure_preview(ctx.account_id, preview.parent_script, preview.name,
                                                ignore_base_config=not preview.inherit_secrets,
                                                settings=preview_settings(preview.settings, ctx.spec.worker_settings))
    except ParentWorkerMissing:
        raise _parent_missing(ctx, DURABLE_OBJECTS) from None
    except CloudflareError as exc:
        raise step_failure(exc, DURABLE_OBJECTS) from None
    ctx.state.extra[PREVIEW_ID] = found.id
    ctx.state.extra[PREVIEW] = {"id": found.id, "name": found.name, "slug": found.slug, "urls": list(found.urls)}
    if found.url:
        ctx.state.extra[PREVIEW_URL] = found.url
    classes = ", ".join(ctx.spec.class_names)
    await ctx.log(f"Preview {preview.name} of {preview.parent_script} (id {found.id})"
                  + (f"; its own Durable Object storage for {classes}" if classes else ""))
    return "completed"


def _migrations(ctx: StepContext) -> list[dict[str, Any]]:
    """The repository's migrations, or (without any) one that creates the preview's SQLite classes."""
    if ctx.spec.migrations is not None:
        return list(ctx.spec.migrations)
    classes = ctx.spec.class_names
    return [{"tag": "v1", "new_sqlite_classes": classes}] if classes else []


#: Settings a Preview deployment carries (the spec's DeploymentMetadata); the previews block's win.
DEPLOYMENT_SETTINGS = ("limits", "placement")


def _deployment_settings(environment: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    merged = {**{k: v for k, v in environment.items() if k in DEPLOYMENT_SETTINGS},
              **{k: v for k, v in block.items() if k in DEPLOYMENT_SETTINGS}}
    return merged


async def _inherited(ctx: StepContext, preview: PreviewSpec, latest: Any) -> list[str]:
    if preview.inherit_secrets is True:
        return list(latest.secret_names) if latest is not None else []
    return list(preview.inherit_secrets or [])


def _found(ctx: StepContext, worker: str) -> Preview | None:
    """The Preview step 5 found (None in a state written before it was kept: the client looks it up)."""
    kept = ctx.state.extra.get(PREVIEW)
    return Preview.from_api(kept, worker=worker) if isinstance(kept, dict) else None


async def deploy_to_preview(ctx: StepContext) -> str:
    preview = _preview(ctx)
    spec = ctx.spec
    modules = [WorkerModule(m.name, m.content, m.content_type) for m in upload_modules(spec, await ctx.modules())]
    if ctx.dry_run:
        await ctx.log(f"Dry run: would upload {len(modules)} module(s) to the Preview {preview.name}")
        return "skipped"
    preview_id = str(ctx.state.extra.get(PREVIEW_ID) or preview.name)
    message = f"{ctx.deployment.sha[:12]} via Flareship" if ctx.deployment.sha else f"Flareship {ctx.deployment.id}"
    try:
        latest = await ctx.client.latest_deployment(ctx.account_id, preview.parent_script, preview_id)
        if latest is not None and latest.annotations.get("workers/tag") == ctx.deployment.id:
            deployed = latest  # uploaded before a restart: not twice
        else:
            assets = await assets_metadata(ctx, script=preview.parent_script)
            metadata = build_preview_metadata(
                main_module=spec.main_module, compatibility_date=spec.compatibility_date,
                compatibility_flags=spec.compatibility_flags, bindings=spec.bindings(),
                inherit=await _inherited(ctx, preview, latest),
                migrations=preview_migrations(_migrations(ctx), latest.migration_tag if latest else None),
                annotations={"workers/message": message[:100], "workers/tag": ctx.deployment.id},
                settings={**_deployment_settings(spec.worker_settings, preview.settings), "assets": assets},
            )
            deployed = await ctx.client.deploy_to_preview(ctx.account_id, preview.parent_script,
                                                          _found(ctx, preview.parent_script) or preview_id,
                                                          metadata, modules)
    except ParentWorkerMissing:
        raise _parent_missing(ctx, WORKER) from None
    except CloudflareError as exc:
        raise step_failure(exc, WORKER) from None
    ctx.state.version_id = deployed.id
    ctx.state.extra[DEPLOYMENT_ID] = deployed.id
    if deployed.url:
        ctx.state.extra[DEPLOYMENT_URL] = deployed.url
    if deployed.preview_url:
        ctx.state.extra[PREVIEW_URL] = deployed.preview_url
    ctx.state.migration_tag = deployed.migration_tag
    await ctx.log(f"Preview deployment {deployed.id} uploaded ({len(modules)} module(s); bindings from "
                  f"{preview.bindings_source})")
    return "completed"


async def preview_urls(ctx: StepContext) -> str:
    if ctx.dry_run:
        return "skipped"
    url = ctx.state.extra.get(PREVIEW_URL)
    deployment_url = ctx.state.extra.get(DEPLOYMENT_URL)
    if not url and not deployment_url:
        raise FlareshipError("DEPLOY_005", "Cloudflare answered no URL for the Preview: are preview URLs (workers.dev) "
                             "off for the Worker?", step=ROUTES)
    ctx.state.url = str(url or deployment_url)
    if deployment_url:
        ctx.deployment.urls[DEPLOYMENT_URL_KEY] = str(deployment_url)
    await ctx.log(f"Preview URL {ctx.state.url}" + (f"; this deployment: {deployment_url}" if deployment_url else ""))
    return "completed"


async def preview_health(ctx: StepContext) -> str:
    if ctx.dry_run:
        return "skipped"
    url = ctx.state.extra.get(DEPLOYMENT_URL) or ctx.state.url
    if not url:
        raise FlareshipError("DEPLOY_006", "no URL to probe", step=HEALTH)
    await probe_health(ctx, str(url), ctx.spec.health_check_path, ctx.spec.health_check_timeout)
    return "completed"


def preview_pipeline(default: Pipeline) -> Pipeline:
    return {**default, CONTAINER: no_container, DURABLE_OBJECTS: ensure_preview, WORKER: deploy_to_preview,
            ROUTES: preview_urls, HEALTH: preview_health}
