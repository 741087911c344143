"""The 8 pipeline steps of a deployment, each idempotent (step 4 is `container_step.py`, a
rollback's are in `rollback.py`).

Every step looks before it creates, sends the same content when repeated, and keeps what it
learned in `ctx.state` (persisted by the run after each step), so re-running a step after a
crash converges instead of duplicating. A step returns "completed" or "skipped", or raises
FlareshipError with its catalogue code.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import CloudflareError
from bot.cloudflare.workers import WorkerModule, sqlite_migration
from bot.engine import assets_step
from bot.engine.appspec import AppSpec, ContainerSpec
from bot.engine.artifacts import BuildSource
from bot.engine.container_step import containers_of, pinned_image, upload_container
from bot.engine.failures import step_failure, token_failure
from bot.engine.metadata import keep_bindings, upload_modules
from bot.engine.migrations import pending_migrations
from bot.engine.model import (
    AUTHENTICATE,
    CONTAINER,
    DURABLE_OBJECTS,
    HEALTH,
    RESOURCES,
    ROUTES,
    VALIDATE,
    WORKER,
    Deployment,
)
from bot.engine.ports import CloudflareAccounts, EngineSettings
from bot.engine.preflight import (
    Facts,
    bound_resources,
    cloudflare_facts,
    evaluate,
    missing_bound_resources,
    raise_first,
)
from bot.engine.source import Module, RepoSource, main_module_exports, modules_for
from bot.engine.state import StepState
from bot.engine.triggers_apply import apply_triggers
from bot.errors import FlareshipError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class StepContext:
    deployment: Deployment
    spec: AppSpec
    state: StepState
    client: CloudflareClient
    clients: CloudflareAccounts
    account_id: str
    settings: EngineSettings
    http: httpx.AsyncClient
    log: Callable[..., Awaitable[None]]
    load_source: Callable[[], Awaitable[RepoSource | None]]
    today: date
    dry_run: bool = False
    health_interval: float = 1.0
    other_owners: Callable[[], Awaitable[set[str]]] | None = None
    #: The CI build artifact of an app with `build` (bot/engine/artifacts.py): modules, assets, image.
    build: BuildSource | None = None
    #: The account's Workers as step 2 read them; in memory only, so a resumed run reads them again.
    account_scripts: list[dict[str, Any]] | None = None
    _modules: list[Module] | None = field(default=None, repr=False)

    async def modules(self) -> list[Module]:
        if self._modules is None and self.spec.build is not None and self.build is not None:
            self._modules = (await self.build.output()).modules
        if self._modules is None:
            source = await self.load_source() if self.spec.source == "repository" else None
            self._modules = modules_for(self.spec, source)
        return self._modules


# -- 1. Validating configuration ----------------------------------------------------------------

async def validate_configuration(ctx: StepContext) -> str:
    spec = ctx.spec
    modules = await ctx.modules()
    await ctx.log(f"{len(modules)} module(s); main module {spec.main_module}; "
                  f"compatibility date {spec.compatibility_date}")
    facts = Facts(exported_classes=main_module_exports(modules), image_digest="-" if spec.container else None)
    checks, problems = evaluate(spec, facts, ctx.today)
    problems = [p for p in problems if p.check == "dependencies"]
    raise_first(checks, problems, step=VALIDATE)
    if spec.durable_objects:
        await ctx.log("Durable Objects: " + ", ".join(f"{d.class_name} as {d.binding}" for d in spec.durable_objects))
    return "completed"


# -- 2. Authenticating with Cloudflare ----------------------------------------------------------

def _needed_probes(spec: AppSpec) -> tuple[str, ...]:
    """Only the permissions this app needs are probed (each probe is one request)."""
    needed = ["workers", "subdomain"]
    if spec.durable_objects:
        needed.append("durableObjects")
    if spec.container:
        needed.append("containers")
    return tuple(needed)


async def authenticate(ctx: StepContext) -> str:
    try:
        info = await ctx.client.verify_token(ctx.account_id)
        report = await ctx.client.probe_permissions(ctx.account_id, probes=_needed_probes(ctx.spec))
    except CloudflareError as exc:
        raise token_failure(exc, AUTHENTICATE) from None
    needed = _needed_probes(ctx.spec)
    missing = [report.missing[n] for n in needed if n in report.missing]
    if missing:
        raise FlareshipError("AUTH_004", "The Cloudflare token lacks: " + ", ".join(sorted(set(missing))),
                             step=AUTHENTICATE, details={"missingPermissions": sorted(set(missing))})
    ctx.state.token_kind = info.kind
    ctx.account_scripts = report.scripts
    await ctx.log(f"{info.kind} token verified; permissions: "
                  + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in sorted(report.granted.items())))
    return "completed"


# -- 3. Checking resources and quotas -----------------------------------------------------------

async def check_resources(ctx: StepContext) -> str:
    facts = await cloudflare_facts(ctx.spec, ctx.client, ctx.account_id, Facts(image_digest="-"),
                                   scripts=ctx.account_scripts)
    if ctx.other_owners is not None:
        facts.other_owners = await ctx.other_owners()
    checks, problems = evaluate(ctx.spec, facts, ctx.today)
    problems = [p for p in problems if p.check in ("resources", "quotas")]
    try:  # a binding to a KV/D1/R2/queue that is not on the account (DEPLOY_011)
        problems += missing_bound_resources(ctx.spec, await bound_resources(ctx.spec, ctx.client, ctx.account_id))
    except CloudflareError as exc:
        raise step_failure(exc, RESOURCES) from None
    if any(p.check == "dependencies" for p in problems):
        checks["dependencies"] = "fail"
    raise_first(checks, problems, step=RESOURCES)
    ctx.state.script_existed = facts.script_exists
    await ctx.log(f"Worker {ctx.spec.script_name} {'exists' if facts.script_exists else 'is new'}; "
                  f"{facts.worker_count} Worker(s) on the account; Workers plan {facts.workers_plan}")
    return "completed"


# -- 5. Deploying Durable Objects ---------------------------------------------------------------

def next_migration_tag(current: str | None) -> str:
    """`v1`, `v2`, ... continuing whatever number the current tag ends with."""
    if not current:
        return "v1"
    m = re.search(r"(\d+)$", current)
    return f"v{int(m.group(1)) + 1}" if m else f"{current}-v2"


async def _existing_classes(ctx: StepContext) -> set[str]:
    namespaces = await ctx.client.list_durable_object_namespaces(ctx.account_id)
    return {str(ns["class"]) for ns in namespaces if ns.get("script") == ctx.spec.script_name and ns.get("class")}


async def _upload(ctx: StepContext, *, migrations: dict[str, Any] | None) -> dict[str, Any]:
    spec = ctx.spec
    modules = [WorkerModule(m.name, m.content, m.content_type) for m in upload_modules(spec, await ctx.modules())]
    containers = [{"class_name": c.class_name} for c in spec.containers]  # every entry, as wrangler sends
    message = f"Flareship {ctx.deployment.id}"
    if ctx.deployment.sha:
        message = f"{ctx.deployment.sha[:12]} via Flareship"
    return await ctx.client.upload_worker(
        ctx.account_id, spec.script_name, modules,
        main_module=spec.main_module, compatibility_date=spec.compatibility_date,
        compatibility_flags=spec.compatibility_flags, bindings=spec.bindings(), migrations=migrations,
        containers=containers, annotations={"workers/message": message[:100], "workers/tag": ctx.deployment.id},
        keep_bindings=keep_bindings(spec), settings=await _settings_with_assets(ctx),
    )


async def _settings_with_assets(ctx: StepContext) -> dict[str, Any]:
    """The metadata's extra keys; `assets` once the static assets are synced (bot/engine/assets_step.py)."""
    assets = await assets_step.assets_metadata(ctx)
    return {**ctx.spec.worker_settings, **({"assets": assets} if assets else {})}


async def deploy_durable_objects(ctx: StepContext) -> str:
    spec = ctx.spec
    if not spec.durable_objects:
        await ctx.log("No Durable Objects configured")
        return "skipped"
    try:
        exists, tag = await ctx.client.script_state(ctx.account_id, spec.script_name)
        known = await _existing_classes(ctx) if exists else set()
        new_classes = [c for c in spec.class_names if c not in known]
        ctx.state.migration_tag_before = tag
        own = pending_migrations(spec.migrations, tag) if spec.migrations is not None else None
        if spec.migrations is not None:  # the repository's own: only the steps after the current tag
            if ctx.dry_run:
                await ctx.log(f"Dry run: would apply migrations {tag or 'none'} -> "
                              f"{own['new_tag'] if own else tag or 'none'}")
                return "completed"
            if own:
                await ctx.log(f"Migrations {tag or 'none'} -> {own['new_tag']} ({len(own['steps'])} step(s))")
            result = await _upload(ctx, migrations=own)
            ctx.state.version_id = result.get("deployment_id") or result.get("id")
            ctx.state.migration_tag = result.get("migration_tag") or (own or {}).get("new_tag") or tag
            ctx.state.uploaded_in_migration = True
        elif new_classes:
            new_tag = next_migration_tag(tag)
            if ctx.dry_run:
                await ctx.log(f"Dry run: would create {', '.join(new_classes)} (migration {tag or 'none'} -> {new_tag})")
                return "completed"
            await ctx.log(f"New Durable Object class(es) {', '.join(new_classes)}: migration {tag or 'none'} -> {new_tag}")
            result = await _upload(ctx, migrations=sqlite_migration(tag, new_tag, new_classes))
            ctx.state.version_id = result.get("deployment_id") or result.get("id")
            ctx.state.migration_tag = result.get("migration_tag") or new_tag
            ctx.state.uploaded_in_migration = True
        else:
            ctx.state.migration_tag = tag
            await ctx.log(f"Durable Object classes exist (migration tag {tag or 'none'})")
        containers = containers_of(spec)
        if not containers:
            return "completed"
        if ctx.dry_run:
            await ctx.log("Dry run: would update container application(s) "
                          + ", ".join(c.application_name for c in containers))
            return "completed"
        if not ctx.state.uploaded_in_migration:  # the Worker version first, then the applications (wrangler)
            result = await _upload(ctx, migrations=None)
            ctx.state.version_id = result.get("deployment_id") or result.get("id")
            ctx.state.uploaded_in_migration = True
        version_id = ctx.state.version_id or await ctx.client.deployed_version(ctx.account_id, spec.script_name)
        namespace_ids = await ctx.client.durable_object_namespace_ids(ctx.account_id, spec.script_name, version_id) \
            if version_id else {}
        for container in containers:  # one application each, in the config's order, as wrangler does
            await _deploy_application(ctx, container, namespace_ids)
    except CloudflareError as exc:
        raise step_failure(exc, DURABLE_OBJECTS) from None
    return "completed"


async def _deploy_application(ctx: StepContext, container: ContainerSpec, namespace_ids: dict[str, str]) -> None:
    namespace_id = namespace_ids.get(container.class_name)
    if not namespace_id:
        raise FlareshipError("DEPLOY_004", f"no Durable Object namespace found for {container.class_name}",
                             step=DURABLE_OBJECTS)
    image = pinned_image(ctx, container)
    if image is None:  # step 4 pins the images before this step runs
        raise FlareshipError("SYS_001", f"no container image pinned by step 4 for {container.class_name}",
                             step=DURABLE_OBJECTS)
    deployed = await ctx.client.deploy_application(
        ctx.account_id, name=container.application_name, image=image,
        namespace_id=namespace_id, instance_type=container.instance_type,
        max_instances=container.max_instances, description=f"Flareship {ctx.deployment.id}",
        step_percentage=container.rollout_step_percentage, rollout_kind=container.rollout_kind,
    )
    app_id = deployed.application.get("id")
    entries = dict(ctx.state.containers or {})
    entries[container.class_name] = {**entries.get(container.class_name, {}), "image": image, "app_id": app_id}
    ctx.state.containers = entries
    if ctx.spec.container is not None and container.class_name == ctx.spec.container.class_name:
        ctx.state.container_app_id = app_id
    what = "created" if deployed.created else ("updated, rollout started" if deployed.changed else "unchanged")
    await ctx.log(f"Container application {container.application_name} {what}")


# -- 6. Uploading Worker version ----------------------------------------------------------------

async def upload_worker_version(ctx: StepContext) -> str:
    if ctx.dry_run:
        await ctx.log(f"Dry run: would upload {len(await ctx.modules())} module(s) to {ctx.spec.script_name}")
        return "skipped"
    try:
        if ctx.state.uploaded_in_migration and ctx.state.version_id:
            await ctx.log(f"Version {ctx.state.version_id} was uploaded with the migration")
        else:
            result = await _upload(ctx, migrations=None)
            ctx.state.version_id = result.get("deployment_id") or result.get("id")
            if result.get("migration_tag"):
                ctx.state.migration_tag = result["migration_tag"]
            await ctx.log(f"Uploaded version {ctx.state.version_id}")
        # A PUT deploys the new version at 100% (https://developers.cloudflare.com/api/resources/workers/subresources/scripts/methods/update/): nothing more to send.
    except CloudflareError as exc:
        raise step_failure(exc, WORKER) from None
    await ctx.log(f"Version {ctx.state.version_id} deployed at 100%")
    return "completed"


# -- 7. Configuring routes and DNS --------------------------------------------------------------

def workers_url(template: str, script: str, subdomain: str) -> str:
    return template.format(script=script, subdomain=subdomain)


async def configure_routes(ctx: StepContext) -> str:
    spec = ctx.spec
    if ctx.dry_run:
        await ctx.log("Dry run: routes unchanged")
        return "skipped"
    try:  # workers.dev, routes, domains, crons, consumers (bot/engine/triggers_apply.py)
        url = await apply_triggers(spec, ctx.client, ctx.account_id, ctx.settings.workers_url_template, ctx.log)
    except CloudflareError as exc:
        raise step_failure(exc, ROUTES) from None
    ctx.state.url = url
    await ctx.log(f"Reachable at {url}")
    return "completed"


# -- 8. Health check ----------------------------------------------------------------------------

async def probe_health(ctx: StepContext, url: str, path: str, timeout: float, *, step: str = HEALTH) -> None:
    target = url.rstrip("/") + path
    deadline = time.monotonic() + timeout
    last = "no answer"
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            response = await ctx.http.get(target, timeout=max(0.5, min(10.0, remaining)))
            if 200 <= response.status_code < 400:
                await ctx.log(f"Healthy: GET {target} -> {response.status_code} (attempt {attempts})")
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if time.monotonic() + ctx.health_interval > deadline:
            raise FlareshipError("DEPLOY_006", f"{target} not healthy after {timeout:g}s ({attempts} probes; last: {last})",
                                 step=step)
        await asyncio.sleep(ctx.health_interval)


async def health_check(ctx: StepContext) -> str:
    if ctx.dry_run:
        await ctx.log("Dry run: no health check")
        return "skipped"
    url = ctx.state.url
    if not url:
        raise FlareshipError("DEPLOY_006", "no URL to probe", step=HEALTH)
    await probe_health(ctx, url, ctx.spec.health_check_path, ctx.spec.health_check_timeout)
    return "completed"


PIPELINE: dict[str, Callable[[StepContext], Awaitable[str]]] = {
    VALIDATE: validate_configuration,
    AUTHENTICATE: authenticate,
    RESOURCES: check_resources,
    CONTAINER: upload_container,
    DURABLE_OBJECTS: deploy_durable_objects,
    WORKER: upload_worker_version,
    ROUTES: configure_routes,
    HEALTH: health_check,
}
