"""Simulated Worker Previews: parent Workers, Previews, their deployments and their Durable Objects.

State and rules only (no HTTP; `preview_routes.py` serves it), after
bot/sim/specs/cloudflare-previews-subset.json and its README section: a missing Worker answers
10007, a missing Preview 10025, a Preview without deployments 10222 (GET) / 10032 (PATCH).

A parent Worker is the same object as a script (`CloudflareSim.scripts`): POST
/workers/workers creates one without versions (an undeployed Worker), and a Worker uploaded as a
script can own Previews. Each Preview keeps its own migration tag and Durable Object namespaces
(`PreviewSim.namespaces`, never in the account's listing or the parent's), so its storage is
isolated from the parent's and from every other Preview's. DELETE removes the Preview, its
deployments and its namespaces.

Served at the sim's Workers URL with `<slug>-<worker>` (and `<deployment id prefix>-<worker>`)
in place of the script name: the shape of `https://<slug>-<worker>.<subdomain>.workers.dev`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.sim.cloudflare.state import (
    Account,
    Module,
    Script,
    SimError,
)

if TYPE_CHECKING:
    from bot.sim.cloudflare.state import CloudflareSim

WORKER_MISSING = (404, 10007, "This Worker does not exist on your account.")
PREVIEW_MISSING = 10025
NO_DEPLOYMENT_GET = 10222
NO_DEPLOYMENT_PATCH = 10032
SECRET_TYPES = ("secret_text", "secret_key")
#: How many characters of a deployment id name its own URL (like a version's preview URL).
DEPLOYMENT_LABEL_LENGTH = 8


def slugify(name: str) -> str:
    """A DNS-safe label for a Preview name (`feature/login` -> `feature-login`)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:63].rstrip("-") or "preview"


@dataclass
class PreviewDeploymentState:
    id: str
    preview_id: str
    number: int
    created_on: str
    metadata: dict[str, Any]
    modules: dict[str, Module]
    #: name -> binding as the Worker sees it (secrets with their text; `public` drops it).
    env: dict[str, dict[str, Any]]
    migration_tag: str | None
    annotations: dict[str, str]

    @property
    def label(self) -> str:
        return self.id.replace("-", "")[:DEPLOYMENT_LABEL_LENGTH]


@dataclass
class PreviewState:
    id: str
    account_id: str
    worker: str
    name: str
    slug: str
    created_on: str
    updated_on: str
    ignore_base_config: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    deployments: list[PreviewDeploymentState] = field(default_factory=list)  # newest last
    migration_tag: str | None = None
    #: Durable Object class -> namespace id, this Preview's own.
    namespaces: dict[str, str] = field(default_factory=dict)
    sqlite_classes: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"{self.slug}-{self.worker}"


class PreviewSim:
    """Worker Previews of one simulated Cloudflare (`CloudflareSim.previews`)."""

    def __init__(self, sim: CloudflareSim):
        self.sim = sim
        #: Preview id -> Preview.
        self.previews: dict[str, PreviewState] = {}
        #: (account, worker) -> the Worker's `previews_base_config` (secrets with their text).
        self.base_configs: dict[tuple[str, str], dict[str, Any]] = {}
        #: Every namespace id a Preview was given (deleted ones included): for isolation checks.
        self.namespace_log: list[tuple[str, str, str]] = []  # (preview id, class, namespace id)

    # -- the parent Worker -------------------------------------------------------------------

    def _worker(self, account: Account, name: str) -> Script:
        script = self.sim.scripts.get((account.id, name))
        if script is None:
            raise SimError(*WORKER_MISSING)
        return script

    def worker_public(self, script: Script) -> dict[str, Any]:
        base = self.base_configs.get((script.account_id, script.name), {})
        env = {k: {"type": v.get("type", "")} for k, v in (base.get("env") or {}).items()}
        return {"id": script.id, "name": script.name, "created_on": script.created_on,
                "updated_on": script.modified_on, "tags": [],
                "subdomain": {"enabled": script.subdomain_enabled, "previews_enabled": script.previews_enabled},
                "observability": None, "logpush": False, "tail_consumers": [],
                "previews_base_config": {**{k: v for k, v in base.items() if k != "env"}, "env": env}}

    def create_worker(self, account: Account, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not re.match(r"^[a-z0-9_][a-z0-9-_]*$", name):
            raise SimError(400, 10016, f"invalid Worker name {name!r}")
        if (account.id, name) in self.sim.scripts:
            raise SimError(409, 10002, f"a Worker named {name} already exists")  # sim's own conflict code
        if self.sim.script_count(account.id) >= account.worker_limit():
            raise SimError(403, 10037, f"You have exceeded the limit of {account.worker_limit()} Workers on your"
                                       " account.")
        now = self.sim.now()
        script = Script(account.id, name, self.sim.new_id(), now, now)
        subdomain = body.get("subdomain") or {}
        script.subdomain_enabled = bool(subdomain.get("enabled"))
        script.previews_enabled = bool(subdomain.get("previews_enabled"))
        self.sim.scripts[(account.id, name)] = script
        self.sim.creates["script"] += 1
        return self.worker_public(script)

    def get_worker(self, account: Account, name: str) -> dict[str, Any]:
        return self.worker_public(self._worker(account, name))

    def patch_worker(self, account: Account, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge patch of `previews_base_config.env` (null deletes a secret)."""
        script = self._worker(account, name)
        base = self.base_configs.setdefault((account.id, name), {})
        env = base.setdefault("env", {})
        for key, value in ((body.get("previews_base_config") or {}).get("env") or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = dict(value)
        script.modified_on = self.sim.now()
        return self.worker_public(script)

    # -- Previews ------------------------------------------------------------------------------

    def _preview(self, account: Account, worker: str, identifier: str) -> PreviewState:
        self._worker(account, worker)
        for preview in self.previews.values():
            if (preview.account_id == account.id and preview.worker == worker
                    and identifier in (preview.id, preview.name)):
                return preview
        raise SimError(404, PREVIEW_MISSING, f"Preview {identifier} not found")

    def _origin_urls(self, account: Account, origin: str, label: str) -> list[str]:
        """The URL the sim serves `label` at (empty without a workers.dev subdomain: Preview URLs off)."""
        if not account.subdomain:
            return []
        return [f"{origin}/__workers/{account.subdomain}/{label}"]

    def preview_public(self, account: Account, preview: PreviewState, origin: str) -> dict[str, Any]:
        return {"id": preview.id, "name": preview.name, "slug": preview.slug, "worker_name": preview.worker,
                "urls": self._origin_urls(account, origin, preview.label), "tags": [],
                "observability": preview.settings.get("observability"),
                "logpush": bool(preview.settings.get("logpush", False)),
                "tail_consumers": list(preview.settings.get("tail_consumers") or []),
                "created_on": preview.created_on, "updated_on": preview.updated_on}

    def create_preview(self, account: Account, worker: str, body: dict[str, Any], *, ignore_base_config: bool,
                       origin: str) -> dict[str, Any]:
        self._worker(account, worker)
        name = str(body.get("name") or "")
        if not name:
            raise SimError(400, 10021, "a Preview needs a name")
        if any(p.account_id == account.id and p.worker == worker and p.name == name for p in self.previews.values()):
            raise SimError(409, 10026, f"a Preview named {name} already exists")  # sim's own conflict code
        slug = slugify(name)
        if any(p.account_id == account.id and p.worker == worker and p.slug == slug for p in self.previews.values()):
            raise SimError(409, 10026, f"a Preview with the URL label {slug} already exists")
        now = self.sim.now()
        preview = PreviewState(self.sim.new_id(), account.id, worker, name, slug, now, now,
                               ignore_base_config=ignore_base_config,
                               settings={k: v for k, v in body.items() if k != "name"})
        self.previews[preview.id] = preview
        self.sim.creates["preview"] += 1
        return self.preview_public(account, preview, origin)

    def get_preview(self, account: Account, worker: str, identifier: str, origin: str) -> dict[str, Any]:
        return self.preview_public(account, self._preview(account, worker, identifier), origin)

    def patch_preview(self, account: Account, worker: str, identifier: str, body: dict[str, Any],
                      origin: str) -> dict[str, Any]:
        preview = self._preview(account, worker, identifier)
        preview.settings.update(body)
        preview.updated_on = self.sim.now()
        return self.preview_public(account, preview, origin)

    def delete_preview(self, account: Account, worker: str, identifier: str) -> None:
        """The Preview, its deployments and its Durable Object namespaces go; its URLs stop serving."""
        preview = self._preview(account, worker, identifier)
        del self.previews[preview.id]
        self.sim.creates["preview_delete"] += 1

    def forget_worker(self, account_id: str, worker: str) -> None:
        """A deleted script takes its Previews with it."""
        for preview_id in [p.id for p in self.previews.values() if p.account_id == account_id and p.worker == worker]:
            del self.previews[preview_id]
        self.base_configs.pop((account_id, worker), None)

    # -- deployments -------------------------------------------------------------------------------

    def deployment_public(self, account: Account, preview: PreviewState, deployment: PreviewDeploymentState,
                          origin: str) -> dict[str, Any]:
        env = {name: {k: v for k, v in b.items() if not (b.get("type") in SECRET_TYPES and k in ("text", "key_base64",
                                                                                                  "key_jwk"))}
               for name, b in deployment.env.items()}
        metadata = deployment.metadata
        return {"id": deployment.id, "preview_id": preview.id, "preview_name": preview.name,
                "migration_tag": deployment.migration_tag,
                "urls": self._origin_urls(account, origin, f"{deployment.label}-{preview.worker}"),
                "compatibility_date": metadata.get("compatibility_date"),
                "compatibility_flags": list(metadata.get("compatibility_flags") or []),
                "limits": metadata.get("limits") or {}, "placement": metadata.get("placement"),
                "cache": metadata.get("cache") or {}, "annotations": dict(deployment.annotations), "env": env,
                "created_on": deployment.created_on}

    def _migrate(self, preview: PreviewState, migrations: dict[str, Any] | None,
                 modules: dict[str, Module]) -> tuple[str | None, dict[str, str], set[str]]:
        """The Preview's tag, namespaces and SQLite classes after `migrations` (old_tag must be its tag)."""
        namespaces = dict(preview.namespaces)
        sqlite = set(preview.sqlite_classes)
        if not migrations:
            return preview.migration_tag, namespaces, sqlite
        if (migrations.get("old_tag") or None) != preview.migration_tag:
            raise SimError(400, 10079, f"Migration tag precondition failed; current tag is {preview.migration_tag!r},"
                                       f" old_tag was {migrations.get('old_tag')!r}")
        for step in migrations.get("steps") or []:
            for cls, use_sqlite in [(c, True) for c in step.get("new_sqlite_classes") or []] + [
                    (c, False) for c in step.get("new_classes") or []]:
                if cls in namespaces:
                    raise SimError(400, 10074, f"Cannot apply new-class migration to class {cls} that is already"
                                               " depended on")
                if not self.sim._exports_class(modules, cls):
                    raise SimError(400, 10021, f"Uncaught Error: class {cls} is not exported by the script")
                namespaces[cls] = self.sim.new_id()
                if use_sqlite:
                    sqlite.add(cls)
            for cls in step.get("deleted_classes") or []:
                namespaces.pop(cls, None)
                sqlite.discard(cls)
            for rename in step.get("renamed_classes") or []:
                if rename.get("from") in namespaces:
                    namespaces[rename["to"]] = namespaces.pop(rename["from"])
                    if rename["from"] in sqlite:
                        sqlite.discard(rename["from"])
                        sqlite.add(rename["to"])
        return migrations.get("new_tag") or preview.migration_tag, namespaces, sqlite

    def _resolve_env(self, account: Account, preview: PreviewState, sent: dict[str, Any],
                     namespaces: dict[str, str], modules: dict[str, Module]) -> dict[str, dict[str, Any]]:
        """The bindings the deployment runs with: the base config's (unless ignored), then what was
        sent; `inherit` takes the binding of the Preview's previous deployment."""
        base = {} if preview.ignore_base_config else dict(
            (self.base_configs.get((account.id, preview.worker)) or {}).get("env") or {})
        previous = preview.deployments[-1].env if preview.deployments else {}
        env: dict[str, dict[str, Any]] = {k: dict(v) for k, v in base.items()}
        for name, binding in sent.items():
            binding = dict(binding)
            kind = binding.get("type")
            if kind == "inherit":
                if name in previous:
                    env[name] = dict(previous[name])
                    continue
                if name in base:
                    continue
                raise SimError(400, 10057, f"binding {name} of type inherit could not be resolved")
            if kind == "durable_object_namespace":
                cls = str(binding.get("class_name") or "")
                if binding.get("script_name") in (None, preview.worker):
                    if cls not in namespaces:
                        raise SimError(400, 10061, f"Cannot create binding for class '{cls}' because it is not"
                                                   " currently configured to implement Durable Objects. Did you"
                                                   " forget to apply a migration?")
                    if not self.sim._exports_class(modules, cls):
                        raise SimError(400, 10021, f"Uncaught Error: Durable Object class {cls} is not exported")
                    binding["namespace_id"] = namespaces[cls]  # the Preview's own, whatever was sent
            elif kind == "plain_text" and not isinstance(binding.get("text"), str):
                raise SimError(400, 10021, f"plain_text binding {name} needs a string text")
            elif kind == "secret_text" and not isinstance(binding.get("text"), str):
                raise SimError(400, 10021, f"secret_text binding {name} needs a string text")
            self.sim.storage.check_binding(account.id, {"name": name, **binding})
            env[name] = binding
        return env

    def create_deployment(self, account: Account, worker: str, identifier: str, metadata: dict[str, Any],
                          modules: dict[str, Module], origin: str) -> dict[str, Any]:
        preview = self._preview(account, worker, identifier)
        self.sim.check_modules(account, metadata, modules)
        tag, namespaces, sqlite = self._migrate(preview, metadata.get("migrations"), modules)
        for container in metadata.get("containers") or []:
            if container.get("class_name") not in sqlite:
                raise SimError(400, 10021, f"container class {container.get('class_name')} must be a SQLite-backed"
                                           " Durable Object")
        env = self._resolve_env(account, preview, dict(metadata.get("env") or {}), namespaces, modules)
        now = self.sim.now()
        for cls, ns_id in namespaces.items():
            if preview.namespaces.get(cls) != ns_id:
                self.namespace_log.append((preview.id, cls, ns_id))
                self.sim.creates["preview_namespace"] += 1
        preview.namespaces, preview.sqlite_classes, preview.migration_tag = namespaces, sqlite, tag
        deployment = PreviewDeploymentState(self.sim.new_id(), preview.id, len(preview.deployments) + 1, now,
                                            dict(metadata), dict(modules), env, tag,
                                            {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()})
        preview.deployments.append(deployment)
        preview.updated_on = now
        self.sim.creates["preview_deployment"] += 1
        return self.deployment_public(account, preview, deployment, origin)

    def _deployment(self, preview: PreviewState, identifier: str, missing_code: int) -> PreviewDeploymentState:
        if not preview.deployments:
            raise SimError(404, missing_code, f"Preview {preview.name} has no deployment")
        if identifier == "latest":
            return preview.deployments[-1]
        for deployment in preview.deployments:
            if deployment.id == identifier:
                return deployment
        raise SimError(404, missing_code, f"deployment {identifier} not found")

    def get_deployment(self, account: Account, worker: str, identifier: str, deployment_id: str,
                       origin: str) -> dict[str, Any]:
        preview = self._preview(account, worker, identifier)
        return self.deployment_public(account, preview, self._deployment(preview, deployment_id, NO_DEPLOYMENT_GET),
                                      origin)

    def patch_deployment(self, account: Account, worker: str, identifier: str, deployment_id: str,
                         body: dict[str, Any], origin: str) -> dict[str, Any]:
        """A merge patch of secrets and annotations: the answer is a new deployment (as the spec says)."""
        preview = self._preview(account, worker, identifier)
        base = self._deployment(preview, deployment_id, NO_DEPLOYMENT_PATCH)
        env = {k: dict(v) for k, v in base.env.items()}
        for name, value in (body.get("env") or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = dict(value)
        annotations = {**base.annotations, **{str(k): str(v) for k, v in (body.get("annotations") or {}).items()}}
        now = self.sim.now()
        deployment = PreviewDeploymentState(self.sim.new_id(), preview.id, len(preview.deployments) + 1, now,
                                            dict(base.metadata), dict(base.modules), env, base.migration_tag,
                                            annotations)
        preview.deployments.append(deployment)
        preview.updated_on = now
        self.sim.creates["preview_deployment"] += 1
        return self.deployment_public(account, preview, deployment, origin)

    # -- serving ---------------------------------------------------------------------------------

    def find_served(self, subdomain: str, label: str) -> tuple[PreviewState, PreviewDeploymentState] | None:
        """The Preview (its latest deployment) or the deployment served at `<label>.<subdomain>`."""
        accounts = {a.id for a in self.sim.accounts.values() if a.subdomain == subdomain}
        for preview in self.previews.values():
            if preview.account_id not in accounts or not preview.deployments:
                continue
            if label == preview.label:
                return preview, preview.deployments[-1]
            for deployment in preview.deployments:
                if label == f"{deployment.label}-{preview.worker}":
                    return preview, deployment
        return None

    # -- queries for tests -------------------------------------------------------------------------

    def find(self, account_id: str, worker: str, name: str) -> PreviewState | None:
        return next((p for p in self.previews.values()
                     if p.account_id == account_id and p.worker == worker and p.name == name), None)
