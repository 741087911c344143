"""Workers: upload (multipart, one part per module), versions, deployments, rollback, URLs.

Follows wrangler (workers-sdk `deploy-helpers`): the upload is a PUT, safe to repeat with the same
content; deployments are POSTs, so Flareship first reads the current deployment and does nothing
when the wanted version is already live, and re-reads after an ambiguous failure.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.cloudflare.errors import (
    CloudflareError,
    Conflict,
    NotFound,
    ServerError,
    TransportError,
    UnexpectedResponse,
)
from bot.cloudflare.resources import ResourcesAPI

SCRIPT_API_DATE_HEADER = {"Cloudflare-Workers-Script-Api-Date": "2025-08-01"}
SCRIPT_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9-_]*$")
#: wrangler retries a fresh version 5 x 500 ms; we start quicker.
VERSION_RETRY_DELAYS = (0.1, 0.25, 0.5, 0.5, 0.5)

_MODULE_TYPES = {
    ".js": "application/javascript+module",
    ".mjs": "application/javascript+module",
    ".cjs": "application/javascript",
    ".wasm": "application/wasm",
    ".map": "application/source-map",
    ".txt": "text/plain",
    ".html": "text/plain",
    ".json": "text/plain",
    ".bin": "application/octet-stream",
}


@dataclass(frozen=True)
class WorkerModule:
    """One module of a Worker: its name (path relative to the main module's dir) and bytes."""

    name: str
    content: bytes
    content_type: str | None = None

    @property
    def media_type(self) -> str:
        return self.content_type or module_content_type(self.name)


def module_content_type(name: str) -> str:
    """The multipart part type Cloudflare expects for a module file name
    (https://developers.cloudflare.com/workers/configuration/multipart-upload-metadata/)."""
    return _MODULE_TYPES.get(posixpath.splitext(name)[1].lower(), "application/octet-stream")


def durable_object_binding(name: str, class_name: str) -> dict:
    return {"type": "durable_object_namespace", "name": name, "class_name": class_name}


def var_bindings(variables: Mapping[str, Any]) -> list[dict]:
    """String vars become plain_text bindings, anything else json (as wrangler sends `vars`)."""
    out = []
    for key, value in variables.items():
        if isinstance(value, str):
            out.append({"type": "plain_text", "name": key, "text": value})
        else:
            out.append({"type": "json", "name": key, "json": value})
    return out


def sqlite_migration(old_tag: str | None, new_tag: str, new_classes: Iterable[str]) -> dict:
    """A migration creating SQLite-backed Durable Object classes (containers need SQLite)."""
    migration: dict[str, Any] = {"new_tag": new_tag, "steps": [{"new_sqlite_classes": list(new_classes)}]}
    if old_tag:
        migration["old_tag"] = old_tag
    return migration


#: Binding kinds every upload keeps (secrets set with `wrangler secret put` or in the dashboard).
KEEP_SECRETS = ("secret_text", "secret_key")

#: Limits of version annotations (spec: `workers_version-post` metadata).
MAX_TAG_LENGTH = 20
MAX_MESSAGE_LENGTH = 50


def normalize_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """Fit annotations into Cloudflare's limits: the message is cut, a long tag is replaced by a
    stable 20-character hash of it (so it still identifies the same upload)."""
    out = dict(annotations)
    if isinstance(out.get("workers/message"), str):
        out["workers/message"] = out["workers/message"][:MAX_MESSAGE_LENGTH]
    tag = out.get("workers/tag")
    if isinstance(tag, str) and len(tag) > MAX_TAG_LENGTH:
        out["workers/tag"] = "t-" + hashlib.sha256(tag.encode()).hexdigest()[:MAX_TAG_LENGTH - 2]
    return out


def build_upload_metadata(
    *,
    main_module: str,
    compatibility_date: str,
    compatibility_flags: Iterable[str] = (),
    bindings: Iterable[dict] = (),
    migrations: dict | None = None,
    containers: Iterable[dict] | None = None,
    keep_bindings: Iterable[str] | None = None,
    annotations: Mapping[str, str] | None = None,
    tags: Iterable[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict:
    """The `metadata` part of a Worker upload (pure).

    `keep_bindings` defaults to the secret kinds, so secrets set outside Flareship survive every
    upload (README.md "Deploying a real project"); `compatibility_flags` is always sent, as
    wrangler does. `settings` carries the other metadata keys wrangler sends as written
    (observability, placement, limits, tail_consumers, logpush, assets).
    """
    metadata: dict[str, Any] = {
        "main_module": main_module,
        "compatibility_date": compatibility_date,
        "bindings": list(bindings),
        "compatibility_flags": list(compatibility_flags),
    }
    if migrations:
        metadata["migrations"] = migrations
    if containers:
        metadata["containers"] = list(containers)
    metadata["keep_bindings"] = list(KEEP_SECRETS if keep_bindings is None else keep_bindings)
    for key, value in (settings or {}).items():
        if value is not None and key not in metadata:
            metadata[key] = value
    if annotations:
        metadata["annotations"] = normalize_annotations(annotations)
    if tags:
        metadata["tags"] = list(tags)
    return metadata


def upload_parts(metadata: dict, modules: Iterable[WorkerModule], *, module_part: str | None = None) -> list:
    """httpx `files=`: the metadata part, then one part per module (filename and type the module's).

    A script or version upload names each part after its module and sends the metadata as a
    `metadata.json` file; a Worker Preview deployment (`module_part="files"`, bot/cloudflare/previews.py)
    names every module part `files` and sends the metadata as a plain field without a Content-Type,
    as wrangler's FormData does.
    """
    encoded = json.dumps(metadata).encode()
    parts: list = [("metadata", (None, encoded) if module_part else ("metadata.json", encoded, "application/json"))]
    for module in modules:
        parts.append((module_part or module.name, (module.name, module.content, module.media_type)))
    return parts


def content_marker(metadata: dict, modules: Iterable[WorkerModule]) -> str:
    """A short hash naming an upload's content (metadata without annotations, and every module)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in metadata.items() if k != "annotations"}, sort_keys=True).encode())
    for module in sorted(modules, key=lambda m: m.name):
        digest.update(module.name.encode() + b"\0" + module.media_type.encode() + b"\0")
        digest.update(hashlib.sha256(module.content).digest())
    return "fls-" + digest.hexdigest()[:MAX_TAG_LENGTH - 4]


def current_version_id(deployments: list[dict]) -> str | None:
    """The version at 100% in the newest deployment (None when split or no deployment)."""
    if not deployments:
        return None
    newest = sorted(deployments, key=lambda d: d.get("created_on") or "", reverse=True)[0]
    versions = newest.get("versions") or []
    if len(versions) == 1 and float(versions[0].get("percentage", 0)) >= 100:
        return versions[0].get("version_id")
    return None


def rollback_target(deployments: list[dict], version_id: str | None = None) -> str | None:
    """wrangler's choice: skip the current deployment, take the first at 100% (or the given version)."""
    if version_id:
        return version_id
    ordered = sorted(deployments, key=lambda d: d.get("created_on") or "", reverse=True)
    current = current_version_id(ordered)
    for deployment in ordered[1:]:
        versions = deployment.get("versions") or []
        if (len(versions) == 1 and float(versions[0].get("percentage", 0)) >= 100
                and versions[0].get("version_id") != current):
            return versions[0]["version_id"]
    return None


class WorkersAPI(ResourcesAPI):
    """Mixin over CloudflareTransport (with the binding and trigger calls of `ResourcesAPI`)."""

    #: Waits before looking again for a version just uploaded (CloudflareClient's argument).
    version_retry_delays: tuple[float, ...] = VERSION_RETRY_DELAYS

    if TYPE_CHECKING:  # provided by CloudflareTransport (bot/cloudflare/transport.py)
        max_attempts: int
        _sleep: Callable[[float], Awaitable[None]]

        async def call(self, method: str, path: str, **kw: Any) -> Any: ...

        def _retry_delay(self, error: CloudflareError, attempt: int) -> float | None: ...

    # -- scripts --------------------------------------------------------------------

    async def list_scripts(self, account_id: str) -> list[dict]:
        return await self.call("GET", f"/accounts/{account_id}/workers/scripts") or []

    async def get_service(self, account_id: str, script: str) -> dict | None:
        """GET /workers/services/{name} (None when the Worker does not exist yet)."""
        try:
            return await self.call("GET", f"/accounts/{account_id}/workers/services/{script}")
        except NotFound:
            return None

    async def script_state(self, account_id: str, script: str) -> tuple[bool, str | None]:
        """(exists, current migration tag) - the tag the next migration's `old_tag` must name."""
        service = await self.get_service(account_id, script)
        if service is None:
            return False, None
        script_info = (service.get("default_environment") or {}).get("script") or {}
        return True, script_info.get("migration_tag") or None

    async def upload_worker(
        self,
        account_id: str,
        script: str,
        modules: Iterable[WorkerModule] | Mapping[str, bytes],
        *,
        main_module: str,
        compatibility_date: str,
        compatibility_flags: Iterable[str] = (),
        bindings: Iterable[dict] = (),
        migrations: dict | None = None,
        containers: Iterable[dict] | None = None,
        keep_bindings: Iterable[str] | None = None,
        annotations: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> dict:
        """PUT the Worker (multipart). Returns `{id, etag, handlers, migration_tag, deployment_id, ...}`;
        `deployment_id` is the new version id, deployed at 100%.

        Every upload carries an identity in `annotations["workers/tag"]` (the caller's, else a hash
        of the content). When the live version already carries it - a retried step, or a PUT whose
        answer was lost - nothing is uploaded again and that version is returned (`reused: True`).
        A PUT with migrations is not repeatable (old_tag changes), so ambiguous failures are
        settled by re-reading, never by resending blindly.
        """
        if not SCRIPT_NAME_RE.match(script):
            raise ValueError(f"invalid Worker name {script!r}")
        if isinstance(modules, Mapping):
            modules = [WorkerModule(name, content) for name, content in modules.items()]
        modules = list(modules)
        if main_module not in {m.name for m in modules}:
            raise ValueError(f"main module {main_module!r} is not among the modules")
        metadata = build_upload_metadata(
            main_module=main_module, compatibility_date=compatibility_date,
            compatibility_flags=compatibility_flags, bindings=bindings, migrations=migrations,
            containers=containers, keep_bindings=keep_bindings, annotations=annotations, tags=tags,
            settings=settings,
        )
        marker = metadata.get("annotations", {}).get("workers/tag") or content_marker(metadata, modules)
        metadata.setdefault("annotations", {})["workers/tag"] = marker
        new_tag = (migrations or {}).get("new_tag")
        already = await self._uploaded_version(account_id, script, marker, new_tag)
        if already is not None:
            return already
        path = f"/accounts/{account_id}/workers/scripts/{script}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.call("PUT", path, params={"excludeScript": "true", "bindings_inherit": "strict"},
                                       files=upload_parts(metadata, modules), idempotent=False)
            except (TransportError, ServerError, UnexpectedResponse) as exc:
                already = await self._uploaded_version(account_id, script, marker, new_tag)
                if already is not None:
                    return already
                if attempt >= self.max_attempts:
                    raise
                await self._sleep(self._retry_delay(exc, attempt) or 0)

    async def _uploaded_version(self, account_id: str, script: str, marker: str,
                                new_tag: str | None) -> dict | None:
        """The live version when it carries `marker` (and the migration reached `new_tag`), else None."""
        service = await self.get_service(account_id, script)
        if service is None:
            return None
        script_info = (service.get("default_environment") or {}).get("script") or {}
        if new_tag and script_info.get("migration_tag") != new_tag:
            return None
        live = await self.deployed_version(account_id, script)
        if not live:
            return None
        version = await self.get_version(account_id, script, live)
        if (version.get("annotations") or {}).get("workers/tag") != marker:
            return None
        return {"id": script, "deployment_id": live, "version_id": live,
                "migration_tag": script_info.get("migration_tag"), "etag": script_info.get("etag"),
                "reused": True}

    async def upload_version(
        self,
        account_id: str,
        script: str,
        modules: Iterable[WorkerModule] | Mapping[str, bytes],
        *,
        main_module: str,
        compatibility_date: str,
        compatibility_flags: Iterable[str] = (),
        bindings: Iterable[dict] = (),
        keep_bindings: Iterable[str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict:
        """POST a version of an existing Worker without deploying it (wrangler `versions upload`;
        no migrations, no containers). Deploy it with `create_deployment`. A version already
        carrying the same `workers/tag` is returned instead of uploading a duplicate."""
        if isinstance(modules, Mapping):
            modules = [WorkerModule(name, content) for name, content in modules.items()]
        modules = list(modules)
        if main_module not in {m.name for m in modules}:
            raise ValueError(f"main module {main_module!r} is not among the modules")
        metadata = build_upload_metadata(
            main_module=main_module, compatibility_date=compatibility_date, compatibility_flags=compatibility_flags,
            bindings=bindings, keep_bindings=keep_bindings, annotations=annotations,
        )
        marker = metadata.get("annotations", {}).get("workers/tag") or content_marker(metadata, modules)
        metadata.setdefault("annotations", {})["workers/tag"] = marker

        async def existing() -> dict | None:
            for version in await self.list_versions(account_id, script, deployable=False):
                if (version.get("annotations") or {}).get("workers/tag") == marker:
                    return version
            return None

        found = await existing()
        if found is not None:
            return found
        try:
            return await self.call("POST", f"/accounts/{account_id}/workers/scripts/{script}/versions",
                                   files=upload_parts(metadata, modules))
        except (TransportError, ServerError, UnexpectedResponse):
            found = await existing()
            if found is not None:
                return found
            raise

    async def delete_script(self, account_id: str, script: str, *, force: bool = True) -> None:
        await self.call("DELETE", f"/accounts/{account_id}/workers/scripts/{script}",
                        params={"force": "true"} if force else None)

    # -- versions ---------------------------------------------------------------------

    async def list_versions(self, account_id: str, script: str, *, deployable: bool = True) -> list[dict]:
        result = await self.call("GET", f"/accounts/{account_id}/workers/scripts/{script}/versions",
                                 params={"deployable": "true"} if deployable else None)
        return (result or {}).get("items", []) if isinstance(result, dict) else (result or [])

    async def get_version(self, account_id: str, script: str, version_id: str) -> dict:
        """GET a version, retrying 100146 (a fresh version is not visible at once)."""
        path = f"/accounts/{account_id}/workers/scripts/{script}/versions/{version_id}"
        for delay in (*self.version_retry_delays, None):
            try:
                return await self.call("GET", path)
            except NotFound as exc:
                if 100146 not in exc.codes or delay is None:
                    raise
                await self._sleep(delay)
        raise AssertionError("unreachable")

    async def durable_object_namespace_ids(self, account_id: str, script: str, version_id: str) -> dict[str, str]:
        """class name -> namespace id, from the version's bindings, else from the namespace list."""
        version = await self.get_version(account_id, script, version_id)
        found: dict[str, str] = {}
        bindings = ((version.get("resources") or {}).get("bindings")) or []
        for binding in bindings:
            if binding.get("type") == "durable_object_namespace" and binding.get("namespace_id"):
                found[binding.get("class_name")] = binding["namespace_id"]
        for ns in await self.list_durable_object_namespaces(account_id):
            if ns.get("script") == script and ns.get("class") and ns["class"] not in found:
                found[ns["class"]] = ns["id"]
        return found

    # -- deployments ------------------------------------------------------------------

    async def list_deployments(self, account_id: str, script: str) -> list[dict]:
        """Newest first."""
        result = await self.call("GET", f"/accounts/{account_id}/workers/scripts/{script}/deployments")
        deployments = (result or {}).get("deployments", []) if isinstance(result, dict) else (result or [])
        return sorted(deployments, key=lambda d: d.get("created_on") or "", reverse=True)

    async def deployed_version(self, account_id: str, script: str) -> str | None:
        """The version at 100% right now (None when none or split)."""
        return current_version_id(await self.list_deployments(account_id, script))

    async def create_deployment(
        self,
        account_id: str,
        script: str,
        version_id: str,
        *,
        message: str | None = None,
        force: bool = False,
        before: list[dict] | None = None,
    ) -> dict:
        """Deploy `version_id` at 100%. Never sent twice: when it is already live nothing is
        created, and after an ambiguous failure the deployments are re-read."""
        path = f"/accounts/{account_id}/workers/scripts/{script}/deployments"
        existing = before if before is not None else await self.list_deployments(account_id, script)
        if current_version_id(existing) == version_id and existing:
            return existing[0]
        body: dict[str, Any] = {"strategy": "percentage", "versions": [{"version_id": version_id, "percentage": 100}]}
        if message:
            body["annotations"] = {"workers/message": message[:50]}
        known = {d.get("id") for d in existing}
        try:
            return await self.call("POST", path, params={"force": "true"} if force else None, json_body=body)
        except (TransportError, ServerError, UnexpectedResponse):
            after = await self.list_deployments(account_id, script)
            if after and after[0].get("id") not in known and current_version_id(after) == version_id:
                return after[0]
            raise

    async def rollback(self, account_id: str, script: str, version_id: str | None = None, *,
                       message: str | None = None) -> dict:
        """A new deployment at 100% of the previous (or given) version; repeats with force on 10220."""
        deployments = await self.list_deployments(account_id, script)
        target = rollback_target(deployments, version_id)
        if target is None:
            raise NotFound(404, [{"code": 10007, "message": "no previous version to roll back to"}])
        try:
            return await self.create_deployment(account_id, script, target, message=message, before=deployments)
        except Conflict as exc:
            if 10220 not in exc.codes:
                raise
            return await self.create_deployment(account_id, script, target, message=message, force=True)

    # -- URLs -------------------------------------------------------------------------

    async def get_account_subdomain(self, account_id: str) -> str | None:
        """The account's workers.dev subdomain (None when it has none: 10007)."""
        try:
            result = await self.call("GET", f"/accounts/{account_id}/workers/subdomain")
        except NotFound:
            return None
        result = result or {}
        return result.get("subdomain") or result.get("name")  # live API / spec24 drift

    async def ensure_account_subdomain(self, account_id: str, preferred: str) -> str:
        """Read the subdomain; create `preferred` only when there is none."""
        current = await self.get_account_subdomain(account_id)
        if current:
            return current
        result = await self.call("PUT", f"/accounts/{account_id}/workers/subdomain",
                                 json_body={"subdomain": preferred})
        return (result or {}).get("subdomain") or (result or {}).get("name") or preferred

    async def get_script_subdomain(self, account_id: str, script: str) -> dict:
        return await self.call("GET", f"/accounts/{account_id}/workers/scripts/{script}/subdomain",
                               headers=SCRIPT_API_DATE_HEADER)

    async def enable_script_subdomain(self, account_id: str, script: str, *, previews: bool = False) -> dict:
        """Turn on `{script}.{subdomain}.workers.dev` (idempotent; retried, it fails intermittently)."""
        return await self.call(
            "POST", f"/accounts/{account_id}/workers/scripts/{script}/subdomain",
            json_body={"enabled": True, "previews_enabled": previews},
            headers=SCRIPT_API_DATE_HEADER, idempotent=True,
        )

    async def list_routes(self, zone_id: str) -> list[dict]:
        return await self.call("GET", f"/zones/{zone_id}/workers/routes") or []

    async def ensure_route(self, zone_id: str, pattern: str, script: str) -> dict:
        """A zone route `pattern -> script`: reuse, repoint (PUT) or create, never two."""
        for route in await self.list_routes(zone_id):
            if route.get("pattern") == pattern:
                if route.get("script") == script:
                    return route
                return await self.call("PUT", f"/zones/{zone_id}/workers/routes/{route['id']}",
                                       json_body={"pattern": pattern, "script": script})
        try:
            return await self.call("POST", f"/zones/{zone_id}/workers/routes",
                                   json_body={"pattern": pattern, "script": script})
        except (TransportError, ServerError, UnexpectedResponse):
            for route in await self.list_routes(zone_id):
                if route.get("pattern") == pattern and route.get("script") == script:
                    return route
            raise

    async def list_domains(self, account_id: str, *, hostname: str | None = None,
                           service: str | None = None) -> list[dict]:
        params = {k: v for k, v in {"hostname": hostname, "service": service}.items() if v}
        return await self.call("GET", f"/accounts/{account_id}/workers/domains", params=params or None) or []

    async def attach_domain(self, account_id: str, hostname: str, service: str, zone_id: str,
                            environment: str = "production") -> dict:
        """Custom domain -> Worker (PUT: idempotent)."""
        return await self.call("PUT", f"/accounts/{account_id}/workers/domains", json_body={
            "hostname": hostname, "service": service, "zone_id": zone_id, "environment": environment,
        })

    # -- Durable Objects ----------------------------------------------------------------

    async def list_durable_object_namespaces(self, account_id: str) -> list[dict]:
        return await self.call("GET", f"/accounts/{account_id}/workers/durable_objects/namespaces",
                               params={"per_page": 1000}) or []
