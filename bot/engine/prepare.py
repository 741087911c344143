"""Preparing a deployment: resolve the app, run the pre-flight checks, persist it as "initiated".

Also where the engine finds an environment's Cloudflare client and a repository's source at a
SHA (cached, 16 entries), both of which a running deployment needs again.
"""

from __future__ import annotations

from collections import OrderedDict

import httpx

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import CloudflareError
from bot.engine import images
from bot.engine.appspec import AppSpec, resolve_repository_app, resolve_seed_app
from bot.engine.cost import estimate_monthly_cost
from bot.engine.model import Deployment, PrepareRequest, new_deployment_id
from bot.engine.ports import Clock, CloudflareAccounts, EngineServices
from bot.engine.preflight import Facts, cloudflare_facts, evaluate, raise_first
from bot.engine.preview_app import resolve_preview_app
from bot.engine.preview_spec import is_preview_environment
from bot.engine.records import Records, deployment_row
from bot.engine.source import (
    RepoSource,
    load_repository,
    main_module_exports,
    modules_for,
)
from bot.engine.state import StepState
from bot.errors import FlareshipError
from bot.logs import new_correlation_id
from bot.store.deployments import DeploymentStore

SOURCE_CACHE = 16


class Preparer:
    """Turns a PrepareRequest into a checked, persisted deployment."""

    def __init__(self, services: EngineServices, cloudflare: CloudflareAccounts, store: DeploymentStore,
                 records: Records, clock: Clock) -> None:
        self.services = services
        self.settings = services.settings
        self.cloudflare = cloudflare
        self.store = store
        self.records = records
        self.clock = clock
        self._sources: OrderedDict[tuple[str, str], RepoSource] = OrderedDict()

    async def client_for(self, environment: str) -> tuple[CloudflareClient, str]:
        """The environment's Cloudflare client and account id (AUTH_003 when no account is set)."""
        credentials = self.settings.cloudflare_credentials(environment)
        if not credentials.account_id:
            raise FlareshipError("AUTH_003", f"No Cloudflare account id configured for environment {environment!r} "
                                 f"(set CLOUDFLARE_ACCOUNT_ID or CLOUDFLARE_ACCOUNT_ID_{environment.upper()})")
        return await self.cloudflare.for_environment(environment), credentials.account_id

    async def source(self, repository: str, sha: str, installation_id: int | None) -> RepoSource:
        """The repository's files at `sha` (one tarball per SHA, the last few kept)."""
        key = (repository, sha)
        if key in self._sources:
            self._sources.move_to_end(key)
            return self._sources[key]
        gh = await self.services.github.client(installation_id)  # type: ignore[arg-type]  # a None id fails in the adapter
        source = await load_repository(gh, repository, sha)
        self._sources[key] = source
        while len(self._sources) > SOURCE_CACHE:
            self._sources.popitem(last=False)
        return source

    async def _resolve_spec(self, req: PrepareRequest) -> tuple[AppSpec, RepoSource | None]:
        if req.app is not None:
            spec = req.app if isinstance(req.app, AppSpec) else AppSpec.model_validate(req.app)
            if spec.environment != req.environment:
                raise FlareshipError("DEPLOY_001", f"the app was resolved for {spec.environment!r}, "
                                     f"not {req.environment!r}", details={"field": "environment"})
            return spec, None
        if req.config is not None:
            return resolve_seed_app(req.config, req.environment, req.repo_config), None
        if req.repository and req.sha:
            source = await self.source(req.repository, req.sha, req.installation_id)
            config = source.config()
            if is_preview_environment(req.environment):  # a pull request's preview (bot/engine/preview_app.py)
                return resolve_preview_app(config, req.environment, repository=req.repository, sha=req.sha,
                                           wrangler=source.wrangler(), policy=req.repo_config), source
            spec = resolve_repository_app(config, req.environment, repository=req.repository, sha=req.sha,
                                          wrangler=source.wrangler(), policy=req.repo_config)
            return spec, source
        raise FlareshipError("DEPLOY_001", "nothing to deploy: give an app config, or a repository and SHA",
                             details={"field": "config"})

    async def prepare(self, req: PrepareRequest, *, refuse_if_busy: bool = True) -> Deployment:
        """Pre-flight checks + cost; persists a deployment with status "initiated"."""
        spec, source = await self._resolve_spec(req)
        target = req.repository or spec.name
        # A preview uses its `from` environment's token and account.
        client, account_id = await self.client_for(spec.preview.from_environment if spec.preview else req.environment)
        facts = Facts()
        lock = await self.store.get_lock(target, req.environment)
        if lock is not None:
            facts.lock = {"actor": lock.actor, "reason": lock.reason, "created_at": lock.created_at.isoformat()}
        if refuse_if_busy:
            lease = await self.store.get_lease(target, req.environment)
            if lease is not None and lease.expires_at > self.clock():
                facts.busy_with = lease.deployment_id
        facts.other_owners = {t for t in await self.store.script_owners(spec.script_name, account_id) if t != target}
        try:
            await cloudflare_facts(spec, client, account_id, facts)
        except FlareshipError as exc:
            if exc.code == "DEPLOY_002":
                raise
            raise FlareshipError(exc.code if exc.code.startswith(("AUTH", "SYS")) else "SYS_002", exc.message,
                                 details=exc.details) from None
        modules = modules_for(spec, source)
        # An app built by CI is checked in step 1, once its artifact is there.
        facts.exported_classes = main_module_exports(modules) if spec.build is None else None
        if spec.container is not None and spec.build is not None and spec.build.image:
            facts.image_digest = "-"  # built by CI: pushed from the artifact in step 4
        elif spec.container is not None:
            facts.image_digest, facts.image_error = await self._image_digest(client, account_id, spec)
        checks, problems = evaluate(spec, facts, self.clock().date())
        raise_first(checks, problems)
        now = self.clock()
        deployment = Deployment(
            id=new_deployment_id(),
            environment=req.environment,
            app_name=spec.name,
            script_name=spec.script_name,
            target=target,
            repository=req.repository,
            sha=req.sha,
            ref=req.ref,
            pull_request=req.pull_request,
            installation_id=req.installation_id,
            trigger=req.trigger,
            actor=req.actor,
            status="initiated",
            checks=checks,
            estimated_cost=estimate_monthly_cost(spec),
            previous_release=await self.records.live_release(target, req.environment),
            correlation_id=new_correlation_id(),
            config=spec.snapshot(),
            created_at=now,
        )
        state = StepState(account_id=account_id, inline_modules=spec.inline_modules)
        await self.store.insert(deployment_row(deployment, state, now, account_id=account_id))
        return deployment

    async def _image_digest(self, client: CloudflareClient, account_id: str, spec: AppSpec) -> tuple[str | None, str | None]:
        assert spec.container is not None
        target = images.registry_target(self.settings.container_registry_url)
        try:
            image = images.parse_image(spec.container.image)
        except FlareshipError as exc:
            return None, exc.message
        try:
            registry = await images.registry_client_for(client, self.cloudflare, account_id, target)
            pinned = await images.resolve_digest(registry, image, target)
            return pinned.digest, None
        except CloudflareError as exc:
            images.forget_credentials(self.cloudflare, account_id, target)
            return None, exc.public_message()
        except httpx.HTTPError as exc:
            images.forget_credentials(self.cloudflare, account_id, target)
            return None, type(exc).__name__
