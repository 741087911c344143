"""Worker Previews: one isolated, production-like copy of a Worker per pull request.

Follows what wrangler's `preview` command sends (workers-sdk `deploy-helpers/src/preview`, and
bot/sim/specs/cloudflare-previews-subset.json with its README section): GET the Preview by
name (percent-encoded); 10025 means it does not exist yet, so POST it; 10007 means the parent
Worker does not exist, which Flareship reports (`ParentWorkerMissing`) instead of creating an
empty Worker, since the flow deploys the `from` environment's Worker first. Deployments are
POSTed to the Preview's id as multipart (a `metadata` field and one `files` part per module).

Also here, for `script` mode previews (a Worker `{script}-pr-{N}` per PR): idempotent deletes
of that Worker and of its container application. Every call goes through `CloudflareTransport`,
so errors are those of bot/cloudflare/errors.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bot.cloudflare.containers import application_name
from bot.cloudflare.errors import (
    NO_PREVIEW_DEPLOYMENT_CODE,
    PREVIEW_MISSING_CODE,
    CloudflareError,
    Conflict,
    NotFound,
    ParentWorkerMissing,
    ServerError,
    TransportError,
    UnexpectedResponse,
)
from bot.cloudflare.workers import (
    SCRIPT_NAME_RE,
    WorkerModule,
    content_marker,
    normalize_annotations,
    upload_parts,
)

#: Part name of every module in a Preview deployment upload (the spec's `DeploymentUpload.files`).
FILES_PART = "files"
_AMBIGUOUS = (TransportError, ServerError, UnexpectedResponse)
#: Binding kinds that are secrets: never logged, and carried over with `{type: inherit}`.
SECRET_KINDS = ("secret_text", "secret_key")


# -- names (README.md "Previews") -------------------------------------------------------------


def preview_name(pr_number: int) -> str:
    """`pr-17`: the Preview of PR 17 (and the last part of its GitHub environment `preview/pr-17`)."""
    return f"pr-{pr_number}"


def pr_script_name(script: str, pr_number: int) -> str:
    """`{script}-pr-17`: the Worker of PR 17 in `script` mode."""
    return f"{script}-pr-{pr_number}"


def pr_application_name(script: str, pr_number: int, class_name: str) -> str:
    """`{script}-pr-17-{class_name lowercased}`: the container application of PR 17 in `script` mode."""
    return application_name(pr_script_name(script, pr_number), class_name)


def encode_preview(identifier: str) -> str:
    """The Preview name or id as a path segment, encoded as JavaScript's encodeURIComponent does
    (wrangler: `feature/login` -> `feature%2Flogin`)."""
    return quote(identifier, safe="!~*'()")


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """A Worker Preview. `urls` are the server's (empty when Preview URLs are off)."""

    id: str
    name: str
    slug: str
    worker_name: str
    urls: tuple[str, ...] = ()
    created_on: str | None = None
    updated_on: str | None = None
    #: The Preview's own settings as Cloudflare holds them (observability, logpush, tail_consumers).
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        """The stable Preview URL (`https://<slug>-<worker>.<subdomain>.workers.dev` on Cloudflare)."""
        return self.urls[0] if self.urls else None

    @classmethod
    def from_api(cls, result: Mapping[str, Any], *, worker: str = "") -> Preview:
        return cls(id=str(result["id"]), name=str(result.get("name") or ""), slug=str(result.get("slug") or ""),
                   worker_name=str(result.get("worker_name") or worker), urls=tuple(result.get("urls") or ()),
                   created_on=result.get("created_on"), updated_on=result.get("updated_on"),
                   settings={k: result[k] for k in PREVIEW_SETTING_KEYS if k in result})


@dataclass(frozen=True)
class PreviewDeployment:
    """One deployment of a Preview: its own URLs (fixed to this deployment) and the Preview's.

    `env` maps each binding name to its type only, so a result can be logged without leaking a
    secret's text.
    """

    id: str
    preview_id: str
    preview_name: str
    urls: tuple[str, ...] = ()
    preview_urls: tuple[str, ...] = ()
    migration_tag: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    created_on: str | None = None

    @property
    def url(self) -> str | None:
        """This deployment's own URL (what the PR comment shows for this push)."""
        return self.urls[0] if self.urls else None

    @property
    def preview_url(self) -> str | None:
        """The stable Preview URL (always the Preview's latest deployment)."""
        return self.preview_urls[0] if self.preview_urls else None

    @property
    def secret_names(self) -> tuple[str, ...]:
        """Secrets this deployment carries (set in it, or inherited from the one before)."""
        return tuple(sorted(n for n, kind in self.env.items() if kind in (*SECRET_KINDS, "inherit")))

    @classmethod
    def from_api(cls, result: Mapping[str, Any], *, preview_urls: Iterable[str] = ()) -> PreviewDeployment:
        env = result.get("env") or {}
        return cls(
            id=str(result["id"]), preview_id=str(result.get("preview_id") or ""),
            preview_name=str(result.get("preview_name") or ""), urls=tuple(result.get("urls") or ()),
            preview_urls=tuple(preview_urls), migration_tag=result.get("migration_tag") or None,
            annotations={str(k): str(v) for k, v in (result.get("annotations") or {}).items()},
            env={str(k): str((v or {}).get("type", "")) for k, v in env.items() if isinstance(v, Mapping)},
            created_on=result.get("created_on"),
        )


# -- the upload (pure) -----------------------------------------------------------------------


def preview_env(bindings: Iterable[Mapping[str, Any]], *, inherit: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Flareship's bindings (a list of `{name, type, ...}`, as `build_upload_metadata` takes)
    as the deployment's `env` map keyed by name.

    Durable Object bindings lose `namespace_id`: Cloudflare provisions each Preview's own
    namespace, so a Preview never writes into the parent Worker's storage. `inherit` names
    secrets of the previous deployment to keep without re-sending them (`{type: inherit}`);
    a name also given in `bindings` is sent as given.
    """
    env: dict[str, dict[str, Any]] = {}
    for binding in bindings:
        name = binding.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a binding needs a name: {sorted(binding)}")
        if name in env:
            raise ValueError(f"binding {name!r} is given twice")
        body = {k: v for k, v in binding.items() if k != "name"}
        if body.get("type") == "durable_object_namespace":
            body.pop("namespace_id", None)
        env[name] = body
    for name in inherit:
        env.setdefault(name, {"type": "inherit"})
    return env


#: The settings of a Preview itself, not of its deployments (the spec's `PreviewCreateRequest`).
PREVIEW_SETTING_KEYS = ("observability", "logpush", "tail_consumers")


def preview_settings(block: Mapping[str, Any], top_level: Mapping[str, Any]) -> dict[str, Any]:
    """What wrangler sends when it creates or patches a Preview (deploy-helpers preview/shared.ts
    `assemblePreviewScriptSettings`): `observability` and `logpush` from the previews block, else
    the config's top level; `tail_consumers` only from the block, as `[{name: <service>}]`."""
    result: dict[str, Any] = {}
    for key in ("observability", "logpush"):
        value = block.get(key) if block.get(key) is not None else top_level.get(key)
        if value is not None:
            result[key] = value
    consumers = block.get("tail_consumers")
    if consumers is not None:
        result["tail_consumers"] = [{"name": c["service"]} for c in consumers]
    return result


def _holds(current: Any, wanted: Any) -> bool:
    """True when `current` already says everything `wanted` says (Cloudflare may add defaults)."""
    if isinstance(wanted, Mapping):
        return isinstance(current, Mapping) and all(_holds(current.get(k), v) for k, v in wanted.items())
    return bool(current == wanted)


def preview_settings_differ(preview: Preview, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of `wanted` the Preview does not hold yet (empty: no PATCH needed)."""
    return {k: v for k, v in wanted.items() if not _holds(preview.settings.get(k), v)}


def preview_migrations(migrations: Sequence[Mapping[str, Any]], current_tag: str | None) -> dict[str, Any] | None:
    """What wrangler sends as a Preview deployment's `migrations` (deploy-helpers preview.ts
    `getPreviewMigrationsToUpload`), from the config's tagged steps (`[{tag, new_sqlite_classes...}]`).

    The Preview's first deployment gets every step (no old_tag); later ones only the steps after
    the Preview's `migration_tag`, none when it is already the last; every step again when its
    tag is unknown (deleted from the config).
    """
    if not migrations:
        return None
    steps = [{k: v for k, v in m.items() if k != "tag"} for m in migrations]
    last = str(migrations[-1]["tag"])
    if not current_tag:
        return {"new_tag": last, "steps": steps}
    tags = [str(m["tag"]) for m in migrations]
    if current_tag not in tags:
        return {"old_tag": current_tag, "new_tag": last, "steps": steps}
    index = tags.index(current_tag)
    if index == len(tags) - 1:
        return None
    return {"old_tag": current_tag, "new_tag": last, "steps": steps[index + 1:]}


def build_preview_metadata(
    *,
    main_module: str,
    compatibility_date: str,
    compatibility_flags: Iterable[str] = (),
    bindings: Iterable[Mapping[str, Any]] = (),
    inherit: Iterable[str] = (),
    migrations: Mapping[str, Any] | None = None,
    containers: Iterable[str] = (),
    annotations: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `metadata` part of a Preview deployment (pure; the spec's `DeploymentMetadata`).

    Unlike a script upload there is no `bindings` list and no `keep_bindings`: bindings go in
    `env` (see `preview_env`), and a secret survives only when named in `inherit`. `containers`
    are Durable Object class names (`[{class_name}]`); `settings` passes wrangler's other keys
    through as written (limits, cache, placement, exports, assets).
    """
    metadata: dict[str, Any] = {
        "main_module": main_module,
        "compatibility_date": compatibility_date,
        "compatibility_flags": list(compatibility_flags),
        "env": preview_env(bindings, inherit=inherit),
    }
    if migrations:
        metadata["migrations"] = dict(migrations)
    classes = list(containers)
    if classes:
        metadata["containers"] = [{"class_name": c} for c in classes]
    for key, value in (settings or {}).items():
        if value is not None and key not in metadata:
            metadata[key] = value
    if annotations:
        metadata["annotations"] = normalize_annotations(annotations)
    return metadata


def _modules(parts: Iterable[WorkerModule] | Mapping[str, bytes]) -> list[WorkerModule]:
    if isinstance(parts, Mapping):
        return [WorkerModule(name, content) for name, content in parts.items()]
    return list(parts)


# -- the calls -------------------------------------------------------------------------------


class PreviewsAPI:
    """Mixin over CloudflareTransport: Worker Previews, and the deletes of `script` mode."""

    if TYPE_CHECKING:  # provided by CloudflareTransport (bot/cloudflare/transport.py)
        max_attempts: int
        _sleep: Callable[[float], Awaitable[None]]

        async def call(self, method: str, path: str, **kw: Any) -> Any: ...

        def _retry_delay(self, error: CloudflareError, attempt: int) -> float | None: ...

        async def list_applications(self, account_id: str, *, name: str | None = None) -> list[dict]: ...

    @staticmethod
    def _worker_path(account_id: str, worker: str) -> str:
        if not SCRIPT_NAME_RE.match(worker):
            raise ValueError(f"invalid Worker name {worker!r}")
        return f"/accounts/{account_id}/workers/workers/{worker}"

    def _preview_path(self, account_id: str, worker: str, preview: str) -> str:
        if not preview:
            raise ValueError("a Preview name or id is required")
        return f"{self._worker_path(account_id, worker)}/previews/{encode_preview(preview)}"

    @staticmethod
    def _parent_missing(exc: NotFound, worker: str) -> ParentWorkerMissing:
        return ParentWorkerMissing(exc.status, [dict(e) for e in exc.errors], method=exc.method, path=exc.path,
                                   worker=worker)

    # -- the parent Worker ------------------------------------------------------------------

    async def get_worker(self, account_id: str, worker: str) -> dict[str, Any] | None:
        """GET /workers/workers/{name} (`previews_base_config` included); None when it does not exist."""
        try:
            result: dict[str, Any] = await self.call("GET", self._worker_path(account_id, worker))
        except NotFound as exc:
            if 10007 in exc.codes:
                return None
            raise
        return result

    async def create_parent_worker(self, account_id: str, worker: str, *, workers_dev: bool = True,
                                   previews_enabled: bool = True) -> dict[str, Any]:
        """POST /workers/workers: an undeployed Worker that can own Previews (what wrangler does on
        10007). Flareship's flow deploys the `from` environment instead; this is for callers that
        want wrangler's behaviour. Looked up first, so a repeat does not create a second one."""
        existing = await self.get_worker(account_id, worker)
        if existing is not None:
            return existing
        body = {"name": worker, "subdomain": {"enabled": workers_dev, "previews_enabled": previews_enabled}}
        try:
            result: dict[str, Any] = await self.call("POST", f"/accounts/{account_id}/workers/workers",
                                                     json_body=body)
        except (*_AMBIGUOUS, Conflict):
            existing = await self.get_worker(account_id, worker)
            if existing is not None:
                return existing
            raise
        return result

    # -- Previews -------------------------------------------------------------------------------

    async def get_preview(self, account_id: str, worker: str, name: str) -> Preview | None:
        """The Preview called `name` (or with that id); None when there is none (10025).

        Raises `ParentWorkerMissing` (10007) when the Worker itself does not exist.
        """
        try:
            result = await self.call("GET", self._preview_path(account_id, worker, name))
        except NotFound as exc:
            if PREVIEW_MISSING_CODE in exc.codes:
                return None
            if 10007 in exc.codes:
                raise self._parent_missing(exc, worker) from exc
            raise
        return Preview.from_api(result, worker=worker)

    async def ensure_preview(self, account_id: str, worker: str, name: str, *,
                             ignore_base_config: bool = False, settings: Mapping[str, Any] | None = None) -> Preview:
        """The Preview `name`, created when missing (GET, then POST on 10025 - never a blind POST).

        `ignore_base_config` is wrangler's `--ignore-base-config` (the dashboard's Preview base
        config is then not applied). `settings` (see `preview_settings`) go with the POST; an
        existing Preview gets a PATCH of those it does not hold yet (wrangler patches whenever
        any is set; comparing first saves the write on every later push). Raises
        `ParentWorkerMissing` when the Worker does not exist yet: deploy the `from` environment's
        Worker first.
        """
        wanted = dict(settings or {})
        existing = await self.get_preview(account_id, worker, name)
        if existing is not None:
            changed = preview_settings_differ(existing, wanted)
            if not changed:
                return existing
            result = await self.call("PATCH", self._preview_path(account_id, worker, name), json_body=changed)
            return Preview.from_api(result, worker=worker)
        path = f"{self._worker_path(account_id, worker)}/previews"
        params = {"ignore_base_config": "true"} if ignore_base_config else None
        try:
            result = await self.call("POST", path, params=params, json_body={"name": name, **wanted})
        except NotFound as exc:
            if 10007 in exc.codes:
                raise self._parent_missing(exc, worker) from exc
            raise
        except (*_AMBIGUOUS, Conflict):  # a lost answer, or another replica created it first
            existing = await self.get_preview(account_id, worker, name)
            if existing is not None:
                return existing
            raise
        return Preview.from_api(result, worker=worker)

    async def delete_preview(self, account_id: str, worker: str, name: str) -> bool:
        """DELETE the Preview (and its deployments); False when it was already gone (10025) or its
        Worker is (10007), so closing a PR twice, or a sweep after a crash, is harmless."""
        try:
            await self.call("DELETE", self._preview_path(account_id, worker, name))
        except NotFound as exc:
            if exc.codes & {PREVIEW_MISSING_CODE, 10007}:
                return False
            raise
        return True

    # -- deployments ------------------------------------------------------------------------------

    async def latest_deployment(self, account_id: str, worker: str, preview: Preview | str) -> PreviewDeployment | None:
        """The Preview's newest deployment; None when it has none (10222) or does not exist (10025)."""
        identifier = preview.id if isinstance(preview, Preview) else preview
        path = f"{self._preview_path(account_id, worker, identifier)}/deployments/latest"
        try:
            result = await self.call("GET", path)
        except NotFound as exc:
            if exc.codes & {PREVIEW_MISSING_CODE, NO_PREVIEW_DEPLOYMENT_CODE}:
                return None
            if 10007 in exc.codes:
                raise self._parent_missing(exc, worker) from exc
            raise
        urls = preview.urls if isinstance(preview, Preview) else ()
        return PreviewDeployment.from_api(result, preview_urls=urls)

    async def deploy_to_preview(
        self,
        account_id: str,
        worker: str,
        preview_id: Preview | str,
        metadata: Mapping[str, Any],
        parts: Iterable[WorkerModule] | Mapping[str, bytes],
    ) -> PreviewDeployment:
        """POST a deployment to the Preview (its id, or the `Preview` from `ensure_preview`, whose
        URLs the result then carries without another request). `metadata` is
        `build_preview_metadata(...)`; `parts` the modules.

        The upload carries an identity in `annotations["workers/tag"]` (the caller's, else a hash
        of the content); after an ambiguous failure the latest deployment is read back and
        returned when it carries that tag, so a lost answer never deploys twice.
        """
        modules = _modules(parts)
        main = metadata.get("main_module")
        if main not in {m.name for m in modules}:
            raise ValueError(f"main module {main!r} is not among the modules")
        body = dict(metadata)
        annotations = dict(body.get("annotations") or {})
        marker = annotations.get("workers/tag") or content_marker(body, modules)
        body["annotations"] = {**annotations, "workers/tag": marker}
        preview = preview_id if isinstance(preview_id, Preview) else None
        identifier = preview.id if preview else str(preview_id)
        if preview is None:
            preview = await self.get_preview(account_id, worker, identifier)
            if preview is None:
                raise NotFound(404, [{"code": PREVIEW_MISSING_CODE, "message": f"Preview {identifier} not found"}])
        path = f"{self._preview_path(account_id, worker, identifier)}/deployments"
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self.call("POST", path, files=upload_parts(body, modules, module_part=FILES_PART),
                                         idempotent=False)
                return PreviewDeployment.from_api(result, preview_urls=preview.urls)
            except NotFound as exc:
                if 10007 in exc.codes:
                    raise self._parent_missing(exc, worker) from exc
                raise
            except _AMBIGUOUS as exc:
                latest = await self.latest_deployment(account_id, worker, preview)
                if latest is not None and latest.annotations.get("workers/tag") == marker:
                    return latest
                if attempt >= self.max_attempts:
                    raise
                await self._sleep(self._retry_delay(exc, attempt) or 0)

    # -- `script` mode ------------------------------------------------------------------------------

    async def delete_script_if_present(self, account_id: str, script: str) -> bool:
        """DELETE a Worker (with `force`, so its Durable Object namespaces go too); False when it
        was already gone (10007 / 404): deleting a PR's Worker is safe to repeat."""
        if not SCRIPT_NAME_RE.match(script):
            raise ValueError(f"invalid Worker name {script!r}")
        try:
            await self.call("DELETE", f"/accounts/{account_id}/workers/scripts/{script}", params={"force": "true"})
        except NotFound:
            return False
        return True

    async def delete_container_application(self, account_id: str, name: str) -> bool:
        """DELETE the container application called `name`; False when there is none (so it is
        safe to repeat). Looked up by name, since a PR's application id is not recorded."""
        apps = [a for a in await self.list_applications(account_id, name=name) if a.get("name") == name]
        if not apps:
            return False
        for app in apps:
            try:
                await self.call("DELETE", f"/accounts/{account_id}/containers/applications/{app['id']}")
            except NotFound:
                continue
        return True
