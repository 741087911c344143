"""`AppSpec`: the resolved description of what to deploy to one environment.

Built from the repository config (+ wrangler fallback) or from the REST API's config (a generated
Worker in front of a container). Naming rules live here: the script is the app name in production and `{app}-{environment}`
elsewhere, a container application `{script}-{class name lowercased}`.
Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.engine.bindings import var_bindings, wrangler_order
from bot.engine.build import BuildConfig, built_main_name, is_dockerfile, refuse_dockerfile
from bot.engine.config import (
    CLASS_NAME,
    SCRIPT_NAME,
    AppConfig,
    ContainerConfig,
    CostConfig,
    EnvironmentConfig,
    RepoConfig,
    validation_error,
)
from bot.engine.preview_spec import PreviewSpec
from bot.engine.wrangler_app import merge_app_fields, wrangler_app
from bot.errors import FlareshipError

#: Compatibility date of the generated Worker (and of a REST-prepared app).
GENERATED_COMPATIBILITY_DATE = "2025-09-01"
GENERATED_MAIN = "index.js"
DEFAULT_CONTAINER_CLASS = "AppContainer"
#: The port the generated Worker forwards to inside the container.
GENERATED_CONTAINER_PORT = 8080


def upper_snake(name: str) -> str:
    """`AppContainer` -> `APP_CONTAINER`, `HTTPServer` -> `HTTP_SERVER`, `counter2` -> `COUNTER2`."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.replace("-", "_").upper()


def script_name_for(app_name: str, environment: str, override: str | None = None) -> str:
    if override:
        return override
    return app_name if environment == "production" else f"{app_name}-{environment}"


def container_app_name(script_name: str, class_name: str) -> str:
    return f"{script_name}-{class_name.lower()}"


class DurableObjectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    class_name: str
    binding: str
    #: Set when the class lives in another Worker (wrangler `durable_objects.bindings[].script_name`).
    script_name: str | None = None
    environment: str | None = None

    def metadata(self) -> dict[str, Any]:
        """The binding as wrangler sends it (create-worker-upload-form.ts)."""
        out: dict[str, Any] = {"name": self.binding, "type": "durable_object_namespace", "class_name": self.class_name}
        if self.script_name:
            out["script_name"] = self.script_name
        if self.environment:
            out["environment"] = self.environment
        return out


class ContainerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str
    class_name: str
    #: A named instance type, or `{vcpu, memory_mib, disk_mb}`.
    instance_type: str | dict[str, Any] = "basic"
    max_instances: int = 5
    application_name: str
    rollout_step_percentage: int | list[int] | None = None
    rollout_kind: str | None = None


class RouteSpec(BaseModel):
    """A zone route or a custom domain (wrangler `routes`)."""

    model_config = ConfigDict(extra="forbid")
    pattern: str
    zone_id: str | None = None
    zone_name: str | None = None
    custom_domain: bool = False


class AppSpec(BaseModel):
    """Everything the steps need to know; stored as the deployment's config snapshot."""

    model_config = ConfigDict(extra="forbid")

    name: str
    environment: str
    script_name: str
    source: Literal["repository", "generated", "inline"] = "repository"
    repository: str | None = None
    sha: str | None = None
    #: Path of the main module in the repository (source="repository").
    main_path: str | None = None
    #: Name of the main module as uploaded (relative to the main module's directory).
    main_module: str = GENERATED_MAIN
    compatibility_date: str = GENERATED_COMPATIBILITY_DATE
    compatibility_flags: list[str] = Field(default_factory=list)
    durable_objects: list[DurableObjectSpec] = Field(default_factory=list)
    container: ContainerSpec | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    health_check_path: str = "/"
    health_check_timeout: float = 60.0
    url: str | None = None
    cost: CostConfig = Field(default_factory=CostConfig)
    #: Modules supplied inline (source="inline"): name -> text. Used by tests and the demo.
    inline_modules: dict[str, str] | None = None
    # -- from the wrangler config (bot.engine.wrangler_app) --
    wrangler_file: str | None = None
    #: Every other binding, as wrangler sends it (KV, D1, R2, queues, services, ...).
    resource_bindings: list[dict[str, Any]] = Field(default_factory=list)
    #: `observability`, `placement`, `limits`, `tail_consumers`, `logpush`: sent as written.
    worker_settings: dict[str, Any] = Field(default_factory=dict)
    #: The repository's own migrations (None: Flareship generates them for new classes).
    migrations: list[dict[str, Any]] | None = None
    #: Every container (`container` is the first, kept for the single-container steps).
    containers: list[ContainerSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
    #: None: the schedules are left as they are; []: every schedule removed.
    crons: list[str] | None = None
    queue_consumers: list[dict[str, Any]] = Field(default_factory=list)
    workers_dev: bool | None = None
    preview_urls: bool | None = None
    upload_source_maps: bool = False
    keep_vars: bool = False
    #: wrangler `assets` (directory, binding, html_handling, not_found_handling, run_worker_first).
    assets: dict[str, Any] | None = None
    #: `app.build`: the modules, assets and image come from this CI artifact (bot/engine/artifacts.py).
    build: BuildConfig | None = None
    #: Set for a pull request's preview (bot/engine/preview_app.py).
    preview: PreviewSpec | None = None

    def bindings(self) -> list[dict[str, Any]]:
        """Worker metadata bindings in wrangler's order: vars, resources, Durable Objects, ..."""
        dos = [d.metadata() for d in self.durable_objects]
        return wrangler_order(var_bindings(self.vars) + dos + list(self.resource_bindings))

    @property
    def class_names(self) -> list[str]:
        """The Durable Object classes this Worker implements (not those bound from other Workers)."""
        return [d.class_name for d in self.durable_objects if not d.script_name]

    def snapshot(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data.pop("inline_modules", None)
        return data


def _dos(items: list[Any] | None) -> list[DurableObjectSpec]:
    out: list[DurableObjectSpec] = []
    seen: set[tuple[str, str | None]] = set()
    for item in items or []:
        data = item.model_dump() if hasattr(item, "model_dump") else dict(item)
        class_name = data["class_name"]
        key = (class_name, data.get("script_name"))
        if key in seen:
            continue
        seen.add(key)
        out.append(DurableObjectSpec(class_name=class_name, binding=data.get("binding") or upper_snake(class_name),
                                     script_name=data.get("script_name"), environment=data.get("environment")))
    return out


#: The image of a container built into the artifact, until step 4 pushes it (`build.image`).
BUILT_IMAGE = "flareship-build-artifact"


def _container(c: Any, script: str, sha: str | None, build: BuildConfig | None = None) -> ContainerSpec:
    instance = c.instance_type if isinstance(c.instance_type, str) else c.instance_type.model_dump()
    if build is not None and build.image:
        image = f"{BUILT_IMAGE}:{sha or 'latest'}"
    else:
        refuse_dockerfile(c.image, c.class_name)
        image = c.image.replace("{sha}", sha or "latest")
    return ContainerSpec(
        image=image, class_name=c.class_name, instance_type=instance,
        max_instances=c.max_instances, application_name=c.name or container_app_name(script, c.class_name),
        rollout_step_percentage=c.rollout_step_percentage, rollout_kind=c.rollout_kind,
    )


def _built_container(containers: list[Any], build: BuildConfig | None) -> int | None:
    """Which container `build.image` replaces: the one whose image is a Dockerfile, else the first.

    The artifact holds one image, so two containers built from Dockerfiles cannot both get it.
    """
    if build is None or not build.image or not containers:
        return None
    dockerfiles = [i for i, c in enumerate(containers) if is_dockerfile(c.image)]
    if len(dockerfiles) > 1:
        names = ", ".join(containers[i].class_name for i in dockerfiles)
        raise FlareshipError("DEPLOY_001", f"containers {names} are each built from a Dockerfile, but "
                             "app.build.image is one image; build all but one into a registry image",
                             details={"field": "app.build.image"})
    return dockerfiles[0] if dockerfiles else 0


def _main_module_name(main_path: str) -> str:
    return main_path.replace("\\", "/").rsplit("/", 1)[-1]


def resolve_repository_app(
    app_config: RepoConfig,
    environment: str,
    *,
    repository: str | None,
    sha: str | None,
    wrangler: dict[str, Any] | None = None,
    policy: RepoConfig | None = None,
) -> AppSpec:
    """The AppSpec for `environment` from the config at the SHA (+ wrangler fallback).

    `policy` (the default branch's config) supplies environment settings when given, so a pull
    request cannot change where or how it is deployed.
    """
    env_config: EnvironmentConfig = (policy or app_config).environment(environment)
    # Only what the file sets: a default of `app` must not hide the wrangler value.
    raw_app = app_config.app.model_dump(exclude_none=True, exclude_unset=True)
    extras: dict[str, Any] = {}
    extra_containers: list[ContainerConfig] = []
    wrangler_script: str | None = None
    if wrangler:
        found = wrangler_app(wrangler, environment, built=app_config.app.build is not None)
        fallback = dict(found.app_fields)
        containers = found.extras.pop("containers")
        if containers:
            fallback["container"] = containers[0]
        merged = merge_app_fields(raw_app, fallback)
        try:
            app = AppConfig.model_validate(merged)
            extra_containers = [ContainerConfig.model_validate(c) for c in containers[1:]]
        except ValidationError as exc:
            raise validation_error(exc, f"app (with {found.path})") from None
        extras = found.extras
        wrangler_script = found.script_name
    else:
        app = app_config.app
    if not app.name:
        raise FlareshipError("DEPLOY_001", "app.name is required (in .github/flareship.yml or wrangler config)",
                             details={"field": "app.name"})
    if not app.main:
        raise FlareshipError("DEPLOY_001", "app.main is required (the Worker's main module)", details={"field": "app.main"})
    if not app.compatibility_date:
        raise FlareshipError("DEPLOY_001", "app.compatibility_date is required", details={"field": "app.compatibility_date"})
    script = script_name_for(app.name, environment, env_config.script_name or wrangler_script)
    dos = _dos(app.durable_objects)
    configs = ([app.container] if app.container else []) + extra_containers
    built = _built_container(configs, app.build)
    containers_spec = [_container(c, script, sha, app.build if i == built else None) for i, c in enumerate(configs)]
    for c in reversed(containers_spec):
        if c.class_name not in [d.class_name for d in dos if not d.script_name]:
            dos.insert(0, DurableObjectSpec(class_name=c.class_name, binding=upper_snake(c.class_name)))
    return AppSpec(
        name=app.name,
        environment=environment,
        script_name=script,
        source="repository",
        repository=repository,
        sha=sha,
        main_path=app.main,
        main_module=built_main_name(app.main, app.build) if app.build else _main_module_name(app.main),
        compatibility_date=app.compatibility_date,
        compatibility_flags=list(app.compatibility_flags or []),
        durable_objects=dos,
        container=containers_spec[0] if containers_spec else None,
        containers=containers_spec,
        vars=dict(app.vars or {}),
        health_check_path=env_config.health_check.path,
        health_check_timeout=env_config.health_check.timeout_seconds,
        url=env_config.url,
        cost=(policy or app_config).cost,
        build=app.build,
        **extras,
    )


class SeedConfig(BaseModel):
    """The `config` object of `POST /deploy/prepare` (docs/rest-api.md)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    appName: str
    containerImage: str | None = None
    durableObjects: list[str] | None = None
    environmentVars: dict[str, Any] = Field(default_factory=dict)


def resolve_seed_app(config: dict[str, Any], environment: str, policy: RepoConfig | None = None) -> AppSpec:
    """AppSpec for a REST prepare: a generated Worker routing to the container's Durable Object."""
    try:
        seed = SeedConfig.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "config." + ".".join(str(p) for p in first["loc"])
        raise FlareshipError("DEPLOY_001", f"{field}: {first['msg']}", details={"field": field}) from None
    if not SCRIPT_NAME.match(seed.appName) or len(seed.appName) > 54:
        raise FlareshipError("DEPLOY_001", "config.appName must be lowercase letters, digits, '-' or '_'",
                             details={"field": "config.appName"})
    for key in seed.environmentVars:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise FlareshipError("DEPLOY_001", f"config.environmentVars: {key!r} is not a valid variable name",
                                 details={"field": f"config.environmentVars.{key}"})
    classes = list(seed.durableObjects or [])
    for c in classes:
        if not CLASS_NAME.match(c):
            raise FlareshipError("DEPLOY_001", f"config.durableObjects: {c!r} is not a class name",
                                 details={"field": "config.durableObjects"})
    env_config = policy.environments.get(environment) if policy else None
    env_config = env_config or EnvironmentConfig()
    script = script_name_for(seed.appName, environment, env_config.script_name)
    container = None
    if seed.containerImage:
        if any(ch.isspace() for ch in seed.containerImage):
            raise FlareshipError("DEPLOY_001", "config.containerImage must not contain whitespace",
                                 details={"field": "config.containerImage"})
        class_name = classes[0] if classes else DEFAULT_CONTAINER_CLASS
        if not classes:
            classes = [class_name]
        container = ContainerSpec(
            image=seed.containerImage,
            class_name=class_name,
            application_name=container_app_name(script, class_name),
        )
    return AppSpec(
        name=seed.appName,
        environment=environment,
        script_name=script,
        source="generated",
        main_module=GENERATED_MAIN,
        compatibility_date=GENERATED_COMPATIBILITY_DATE,
        durable_objects=_dos([{"class_name": c} for c in classes]),
        container=container,
        vars=dict(seed.environmentVars),
        health_check_path=env_config.health_check.path,
        health_check_timeout=env_config.health_check.timeout_seconds,
        url=env_config.url,
        cost=policy.cost if policy else CostConfig(),
    )


def generated_worker(spec: AppSpec) -> str:
    """The Worker entry module for an image-only app (bot/engine/entry_module.py)."""
    from bot.engine.entry_module import entry_module

    return entry_module(spec, port=GENERATED_CONTAINER_PORT)
