"""State of the simulated Cloudflare: accounts, tokens, Workers, Durable Objects, Containers.

Pure in-memory logic with no HTTP: every operation either returns the `result` Cloudflare would
send or raises `SimError(status, code, message)` with Cloudflare's real error code, so the HTTP
layer (`app.py`) stays a thin translation.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from bot.sim.cloudflare.faults import FaultInjector

#: Permission names a simulated token can hold ("edit" implies "read").
PERMISSIONS = (
    "account_settings:read",
    "billing:read",
    "api_tokens:read",
    "workers_scripts:read",
    "workers_scripts:edit",
    "workers_routes:edit",
    "containers:read",
    "containers:edit",
    # User:User Details:Read, which GET /user needs (account-owned tokens cannot hold it).
    "user_details:read",
)
FULL_PERMISSIONS = frozenset(PERMISSIONS)
#: A typical deploy token: everything but billing and token reading.
DEPLOY_PERMISSIONS = frozenset(PERMISSIONS) - {"billing:read", "api_tokens:read"}

ACCOUNT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
SCRIPT_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9-_]*$")
MODULE_TYPES = {
    "application/javascript+module", "text/javascript+module", "application/javascript", "text/javascript",
    "application/wasm", "text/plain", "application/octet-stream", "application/source-map",
}
JS_MODULE_TYPES = {"application/javascript+module", "text/javascript+module"}
#: Binding kinds a Worker upload may carry (those wrangler sends; the spec's `bindings` list).
BINDING_KINDS = frozenset({
    "secret_text", "secret_key", "kv_namespace", "service", "r2_bucket", "d1", "queue", "send_email", "workflow",
    "vectorize", "hyperdrive", "analytics_engine", "dispatch_namespace", "browser", "ai", "version_metadata",
    "assets", "images", "media", "mtls_certificate", "pipelines", "ratelimit", "secrets_store_secret",
})
PLAN_LIMITS = {"free": 100, "paid": 500}
SCRIPT_SIZE_LIMITS = {"free": 3 * 1024 * 1024, "paid": 10 * 1024 * 1024}


class SimError(Exception):
    def __init__(self, status: int, code: int, message: str, *, headers: dict | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(f"{status} {code} {message}")


@dataclass
class Account:
    id: str
    name: str
    type: str = "standard"  # standard | enterprise
    plan: str = "paid"  # free | paid (Workers plan)
    subscriptions: list[dict] = field(default_factory=list)
    subdomain: str | None = None
    max_workers: int | None = None
    max_script_bytes: int | None = None

    def worker_limit(self) -> int:
        return self.max_workers if self.max_workers is not None else PLAN_LIMITS[self.plan]

    def script_limit(self) -> int:
        return self.max_script_bytes if self.max_script_bytes is not None else SCRIPT_SIZE_LIMITS[self.plan]


@dataclass
class Token:
    value: str
    id: str
    account_ids: set[str]
    permissions: set[str]
    status: str = "active"
    expires_on: str | None = None
    not_before: str | None = None

    @property
    def kind(self) -> str:
        return "account" if self.value.startswith("cfat_") else "user"

    def allows(self, permission: str) -> bool:
        if permission in self.permissions:
            return True
        resource, _, level = permission.partition(":")
        return level == "read" and f"{resource}:edit" in self.permissions


@dataclass
class Module:
    name: str
    content_type: str
    content: bytes


@dataclass
class Version:
    id: str
    number: int
    script: str
    created_on: str
    metadata: dict
    modules: dict[str, Module]
    bindings: list[dict]
    hidden_reads: int = 0

    def public(self) -> dict:
        return {
            "id": self.id,
            "number": self.number,
            "metadata": {"created_on": self.created_on, "modified_on": self.created_on, "source": "api",
                         "author_email": "sim@flareship.test", "has_preview": False},
            "annotations": self.metadata.get("annotations") or {},
            "resources": {
                "bindings": self.bindings,
                "script": {"etag": self.id.replace("-", ""), "handlers": ["fetch"], "last_deployed_from": "api"},
                "script_runtime": {"compatibility_date": self.metadata.get("compatibility_date"),
                                   "compatibility_flags": self.metadata.get("compatibility_flags") or [],
                                   "usage_model": "standard"},
            },
        }


@dataclass
class Script:
    account_id: str
    name: str
    id: str
    created_on: str
    modified_on: str
    migration_tag: str | None = None
    versions: list[Version] = field(default_factory=list)
    deployments: list[dict] = field(default_factory=list)  # newest last
    subdomain_enabled: bool = False
    previews_enabled: bool = False
    containers: list[dict] = field(default_factory=list)
    #: When set, deploying a version other than the newest needs ?force=true (10220).
    rollback_needs_force: bool = False

    def current_deployment(self) -> dict | None:
        return self.deployments[-1] if self.deployments else None

    def live_version_id(self) -> str | None:
        dep = self.current_deployment()
        if not dep:
            return None
        return max(dep["versions"], key=lambda v: v["percentage"])["version_id"]

    def version(self, version_id: str) -> Version | None:
        return next((v for v in self.versions if v.id == version_id), None)

    def public(self) -> dict:
        live = self.version(self.live_version_id() or "") or (self.versions[-1] if self.versions else None)
        metadata = live.metadata if live else {}
        return {
            "id": self.name, "tag": self.id, "etag": (live.id if live else self.id).replace("-", ""),
            "handlers": ["fetch"], "created_on": self.created_on, "modified_on": self.modified_on,
            "migration_tag": self.migration_tag, "usage_model": "standard",
            "compatibility_date": metadata.get("compatibility_date"),
            "compatibility_flags": metadata.get("compatibility_flags") or [],
            "last_deployed_from": "api", "has_modules": True, "tags": metadata.get("tags"),
        }


@dataclass
class Namespace:
    id: str
    account_id: str
    script: str
    class_name: str
    use_sqlite: bool

    def public(self) -> dict:
        return {"id": self.id, "name": f"{self.script}_{self.class_name}", "script": self.script,
                "class": self.class_name, "use_sqlite": self.use_sqlite}


class CloudflareSim:
    """The simulated Cloudflare's state. Tests seed it and read it back."""

    def __init__(self, *, registry_host: str = "registry.cloudflare.com", hidden_version_reads: int = 1):
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, Token] = {}
        self.scripts: dict[tuple[str, str], Script] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.applications: dict[str, dict] = {}
        self.rollouts: dict[str, dict] = {}
        self.zones: dict[str, dict] = {}
        self.routes: dict[str, dict] = {}
        self.domains: dict[str, dict] = {}
        #: Every object created, by kind ("version", "deployment", "application", "rollout", ...).
        self.creates: Counter[str] = Counter()
        #: Every request handled: (method, path, status).
        self.requests: list[tuple[str, str, int]] = []
        self.registry_host = registry_host
        #: GETs of a fresh version answering 100146 before it becomes visible.
        self.hidden_version_reads = hidden_version_reads
        #: Valid registry credentials: password -> (account_id, permissions, expires datetime).
        self.registry_passwords: dict[str, tuple[str, set[str], datetime]] = {}
        #: (script, version_id or None) -> "healthy" | "failing" | "slow"
        self.worker_health: dict[tuple[str, str | None], str] = {}
        self.slow_seconds = 5.0
        #: `Cloudflare-Workers-Script-Api-Date` header of each per-script subdomain POST.
        self.script_api_dates: list[str | None] = []
        #: Cloudflare's per-token limit: `rate_limit` requests per `rate_window` seconds; crossing it
        #: blocks every call of the token for `rate_block` seconds (429 / 971 with Retry-After).
        #: Off (None) unless set - Cloudflare's value is 1200 (the test fixture turns it on);
        #: benchmarks that run hundreds of deployments on one token leave it off.
        self.rate_limit: int | None = None
        self.rate_window = 300.0
        self.rate_block = 300.0
        self._token_requests: dict[str, deque[float]] = {}
        self._token_blocked_until: dict[str, float] = {}
        self.clock = time.monotonic
        #: Check every API request against the Cloudflare OpenAPI files (off only for benchmarks).
        self.validate_requests = True
        self._last_time = datetime.now(UTC)
        self._ids = itertools.count(1)
        # faults/latency live in faults.FaultInjector, attached by make_app
        self.faults: FaultInjector = None  # type: ignore[assignment]  # make_app attaches it
        self.closing = asyncio.Event()
        from bot.sim.cloudflare.storage import StorageSim  # it raises this module's SimError

        #: KV, D1, R2, queues, secrets and schedules (bot/sim/cloudflare/storage.py).
        self.storage = StorageSim()
        from bot.sim.cloudflare.previews import PreviewSim  # it imports this module's types

        #: Worker Previews of the parent Workers in `scripts` (bot/sim/cloudflare/previews.py).
        self.previews = PreviewSim(self)

    async def stall(self, seconds: float) -> None:
        """Sleep for injected latency/timeouts, cut short when the server shuts down."""
        try:
            await asyncio.wait_for(self.closing.wait(), seconds)
        except TimeoutError:
            pass

    # -- rate limits -------------------------------------------------------------------

    def rate_limit_check(self, authorization: str | None) -> int | None:
        """Count a request against its token; seconds to wait when the token is blocked."""
        if self.rate_limit is None or not authorization or not authorization.startswith("Bearer "):
            return None
        key = authorization[7:].strip()
        now = self.clock()
        blocked = self._token_blocked_until.get(key, 0.0)
        if blocked > now:
            return max(1, int(blocked - now + 0.999))
        window = self._token_requests.setdefault(key, deque())
        while window and window[0] <= now - self.rate_window:
            window.popleft()
        if len(window) >= self.rate_limit:
            self._token_blocked_until[key] = now + self.rate_block
            self.creates["rate_limit_block"] += 1
            return int(self.rate_block)
        window.append(now)
        return None

    def rate_limit_headers(self, authorization: str | None) -> dict[str, str]:
        if self.rate_limit is None:
            return {}
        key = (authorization or "")[7:].strip()
        used = len(self._token_requests.get(key, ()))
        return {"Ratelimit": f'"default";r={max(0, self.rate_limit - used)};t={int(self.rate_window)}',
                "Ratelimit-Policy": f'"default";q={self.rate_limit};w={int(self.rate_window)}'}

    # -- time and ids -------------------------------------------------------------------

    def now(self) -> str:
        """Strictly increasing timestamps, so "newest first" is never ambiguous."""
        current = datetime.now(UTC)
        if current <= self._last_time:
            current = self._last_time + timedelta(microseconds=1)
        self._last_time = current
        return current.isoformat().replace("+00:00", "Z")

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    # -- seeding ------------------------------------------------------------------------

    def add_account(self, id: str | None = None, name: str = "Sim Account", type: str = "standard",
                    plan: str = "paid", *, subscriptions: list[str] | None = None, subdomain: str | None = None,
                    max_workers: int | None = None) -> Account:
        account_id = id or self.new_id()
        subs = [{"id": self.new_id(), "state": "Paid", "rate_plan": {"id": n.lower().replace(" ", "_"),
                                                                      "public_name": n}}
                for n in (subscriptions if subscriptions is not None else
                          (["Workers Paid"] if plan == "paid" else []))]
        account = Account(account_id, name, type, plan, subs, subdomain, max_workers)
        self.accounts[account_id] = account
        return account

    def add_token(self, value: str, account_ids=(), permissions=FULL_PERMISSIONS, status: str = "active",
                  *, expires_on: str | None = None, not_before: str | None = None) -> Token:
        unknown = set(permissions) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}; known: {PERMISSIONS}")
        token = Token(value, self.new_id(), set(account_ids), set(permissions), status, expires_on, not_before)
        self.tokens[value] = token
        return token

    def add_zone(self, zone_id: str, name: str, account_id: str) -> dict:
        zone = {"id": zone_id, "name": name, "account_id": account_id}
        self.zones[zone_id] = zone
        return zone

    def set_worker_health(self, script: str, health: str, *, version_id: str | None = None) -> None:
        """healthy | failing | slow, for the script or just one of its versions."""
        if health not in ("healthy", "failing", "slow"):
            raise ValueError("health is healthy, failing or slow")
        self.worker_health[(script, version_id)] = health

    def inject_fault(self, method: str, path_pattern: str, **kw) -> Any:
        """See FaultInjector.add: status / error_code / retry_after / delay / reset, times, after."""
        return self.faults.add(method, path_pattern, **kw)

    def set_latency(self, seconds: float, method: str = "*", path_pattern: str | None = None) -> None:
        self.faults.set_latency(seconds, method, path_pattern)

    # -- auth -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Token:
        if not authorization or not authorization.startswith("Bearer ") or len(authorization) < 8:
            raise SimError(400, 6003, "Invalid request headers")
        token = self.tokens.get(authorization[len("Bearer "):].strip())
        if token is None:
            raise SimError(401, 9106, "Authentication error: invalid API token")
        return token

    def _usable(self, token: Token) -> None:
        if token.status != "active":
            raise SimError(401, 9106, f"Authentication error: API token is {token.status}")
        if token.expires_on and token.expires_on <= datetime.now(UTC).isoformat():
            raise SimError(401, 9106, "Authentication error: API token has expired")

    def account_for(self, token: Token, account_id: str, permission: str | None) -> Account:
        if not ACCOUNT_ID_RE.match(account_id):
            raise SimError(404, 7003, f"Could not route to /accounts/{account_id}, perhaps your object identifier"
                                      " is invalid?")
        self._usable(token)
        account = self.accounts.get(account_id)
        if account is None or account_id not in token.account_ids:
            raise SimError(403, 10000, "Authentication error")
        if permission and not token.allows(permission):
            raise SimError(403, 10000, "Authentication error")
        return account

    def verify_user_token(self, token: Token) -> dict:
        if token.kind == "account":
            raise SimError(401, 1000, "Invalid API Token")
        return self._verify_result(token)

    def verify_account_token(self, token: Token, account_id: str) -> dict:
        if not ACCOUNT_ID_RE.match(account_id):
            raise SimError(404, 7003, "Could not route to /accounts, perhaps your object identifier is invalid?")
        if token.kind != "account" or account_id not in token.account_ids:
            raise SimError(401, 1000, "Invalid API Token")
        return self._verify_result(token)

    def _verify_result(self, token: Token) -> dict:
        status = token.status
        if status == "active" and token.expires_on and token.expires_on <= datetime.now(UTC).isoformat():
            status = "expired"
        result = {"id": token.id, "status": status}
        if token.expires_on:
            result["expires_on"] = token.expires_on
        if token.not_before:
            result["not_before"] = token.not_before
        return result

    # -- accounts ---------------------------------------------------------------------

    def account_public(self, account: Account) -> dict:
        return {"id": account.id, "name": account.name, "type": account.type,
                "settings": {"enforce_twofactor": False}, "created_on": "2024-01-01T00:00:00Z"}

    def script_count(self, account_id: str) -> int:
        return sum(1 for (acc, _), _s in self.scripts.items() if acc == account_id)

    def containers_me(self, account: Account) -> dict:
        if account.plan != "paid":
            raise SimError(403, 10075, "Containers require the Workers Paid plan")
        return {
            "external_account_id": f"ext-{account.id[:12]}",
            "limits": {"account_id": account.id, "vcpu_per_deployment": 4, "memory_mib_per_deployment": 12288,
                       "disk_mb_per_deployment": 20000, "total_vcpu": 40, "total_memory_mib": 122880,
                       "total_disk_mb": 200000},
            "locations": [],
        }

    # -- Workers upload -------------------------------------------------------------------

    def _script(self, account_id: str, name: str) -> Script:
        script = self.scripts.get((account_id, name))
        if script is None:
            raise SimError(404, 10007, "This Worker does not exist on your account.")
        return script

    def _exports_class(self, modules: dict[str, Module], class_name: str) -> bool:
        pattern = re.compile(rf"\b{re.escape(class_name)}\b")
        return any(pattern.search(m.content.decode("utf-8", "replace")) for m in modules.values()
                   if m.content_type in JS_MODULE_TYPES or m.content_type.endswith("javascript"))

    def upload_version(self, account: Account, name: str, metadata: dict, modules: dict[str, Module]) -> dict:
        """POST /workers/scripts/{name}/versions: a new version of an existing Worker, not deployed."""
        script = self._script(account.id, name)
        if metadata.get("migrations"):
            raise SimError(400, 10021, "migrations are not supported in version uploads; use a script upload")
        result = self.upload_script(account, name, {**metadata, "containers": script.containers}, modules,
                                    deploy=False)
        version = script.version(result["version_id"])
        assert version is not None  # upload_script just made it
        return {**version.public(), "startup_time_ms": 3}

    @staticmethod
    def check_modules(account: Account, metadata: dict[str, Any], modules: dict[str, Module]) -> None:
        """What Cloudflare checks of an upload's modules (a script or a Preview deployment)."""
        main = metadata.get("main_module")
        if not main:
            raise SimError(400, 10021, "Uncaught Error: No main_module given in metadata (a module Worker needs one)")
        if main not in modules:
            raise SimError(400, 10021, f"Uncaught Error: No such module \"{main}\".")
        if modules[main].content_type not in JS_MODULE_TYPES:
            raise SimError(400, 10021, f"main module {main} must be application/javascript+module")
        for module in modules.values():
            if module.content_type not in MODULE_TYPES:
                raise SimError(400, 10021, f"Unsupported module type {module.content_type} for {module.name}")
        if sum(len(m.content) for m in modules.values()) > account.script_limit():
            raise SimError(413, 10027, f"Your Worker exceeded the size limit of {account.script_limit()} bytes")

    def upload_script(self, account: Account, name: str, metadata: dict, modules: dict[str, Module], *,
                      deploy: bool = True) -> dict:
        """PUT /workers/scripts/{name}: validate, apply migrations, create a version deployed at 100%
        (`deploy=False`: the version only, as a version upload does)."""
        self.check_modules(account, metadata, modules)
        existing = self.scripts.get((account.id, name))
        if existing is None and self.script_count(account.id) >= account.worker_limit():
            raise SimError(403, 10037, f"You have exceeded the limit of {account.worker_limit()} Workers on your"
                                       " account.")
        containers = metadata.get("containers") or []
        if containers and account.plan != "paid":
            raise SimError(403, 10075, "Containers require the Workers Paid plan")

        # Migrations: old_tag must be the current tag (the precondition Cloudflare checks).
        current_tag = existing.migration_tag if existing else None
        migrations = metadata.get("migrations")
        planned: list[tuple[str, str, Any]] = []
        new_tag = current_tag
        if migrations:
            old_tag = migrations.get("old_tag")
            if (old_tag or None) != current_tag:
                raise SimError(400, 10079, f"Migration tag precondition failed; current tag is {current_tag!r},"
                                           f" old_tag was {old_tag!r}")
            steps = migrations.get("steps")
            if steps is None:
                steps = [{k: v for k, v in migrations.items() if k not in ("old_tag", "new_tag")}]
            for step in steps:
                for cls in step.get("new_sqlite_classes") or []:
                    planned.append(("new", cls, True))
                for cls in step.get("new_classes") or []:
                    planned.append(("new", cls, False))
                for cls in step.get("deleted_classes") or []:
                    planned.append(("delete", cls, None))
                for rename in step.get("renamed_classes") or []:
                    planned.append(("rename", rename.get("from"), rename.get("to")))
            new_tag = migrations.get("new_tag") or current_tag
        classes = {ns.class_name: ns for ns in self.namespaces.values()
                   if ns.account_id == account.id and ns.script == name}
        after = dict(classes)
        for action, cls, arg in planned:
            if action == "new":
                if cls in after:
                    raise SimError(400, 10074, f"Cannot apply new-class migration to class {cls} that is already"
                                               " depended on")
                after[cls] = Namespace(self.new_id(), account.id, name, cls, bool(arg))
            elif action == "delete":
                after.pop(cls, None)
            elif action == "rename" and cls in after:
                renamed = after.pop(cls)
                after[arg] = Namespace(renamed.id, renamed.account_id, renamed.script, arg, renamed.use_sqlite)

        for cls, ns in after.items():  # the script must implement every class the migrations leave
            if classes.get(cls) is not ns and not self._exports_class(modules, cls):
                raise SimError(400, 10021, f"Uncaught Error: class {cls} is not exported by the script")
        bindings = []
        for binding in metadata.get("bindings") or []:
            binding = dict(binding)
            kind = binding.get("type")
            if not binding.get("name"):
                raise SimError(400, 10021, "binding without a name")
            if kind == "durable_object_namespace":
                cls = cast(str, binding.get("class_name"))
                target_script = binding.get("script_name") or name
                if target_script == name:
                    bound = after.get(cls)
                    if bound is None:
                        raise SimError(400, 10061, f"Cannot create binding for class '{cls}' because it is not"
                                                   " currently configured to implement Durable Objects. Did you"
                                                   " forget to apply a migration?")
                    if not self._exports_class(modules, cls):
                        raise SimError(400, 10021, f"Uncaught Error: Durable Object class {cls} is not exported")
                    binding["namespace_id"] = bound.id
            elif kind == "plain_text":
                if not isinstance(binding.get("text"), str):
                    raise SimError(400, 10021, f"plain_text binding {binding['name']} needs a string text")
            elif kind == "json":
                if "json" not in binding:
                    raise SimError(400, 10021, f"json binding {binding['name']} needs json")
            elif kind == "inherit":
                raise SimError(400, 10057, f"binding {binding['name']} of type inherit could not be resolved")
            elif kind not in BINDING_KINDS:
                raise SimError(400, 10021, f"unknown binding type {kind!r}")
            self.storage.check_binding(account.id, binding)
            bindings.append({k: v for k, v in binding.items() if not (kind in ("secret_text", "secret_key")
                                                                       and k in ("text", "key_base64", "key_jwk"))})
        for container in containers:
            backing = after.get(cast(str, container.get("class_name")))
            if backing is None or not backing.use_sqlite:
                raise SimError(400, 10021, f"container class {container.get('class_name')} must be a SQLite-backed"
                                           " Durable Object")

        # Commit.
        now = self.now()
        for cls, ns in classes.items():
            if cls not in after or after[cls].id != ns.id or after[cls].class_name != cls:
                self.namespaces.pop(ns.id, None)
        for ns in after.values():
            if ns.id not in self.namespaces:
                self.creates["namespace"] += 1
            self.namespaces[ns.id] = ns
        if existing is None:
            existing = Script(account.id, name, self.new_id(), now, now)
            self.scripts[(account.id, name)] = existing
            self.creates["script"] += 1
        existing.modified_on = now
        existing.migration_tag = new_tag
        existing.containers = containers
        kept = [b for b in self.storage.after_upload(account.id, name, metadata)
                if b["name"] not in {x["name"] for x in bindings}]
        bindings += [{"name": b["name"], "type": b["type"]} for b in kept]
        version = self._new_version(existing, metadata, modules, bindings)
        if not deploy:
            return {"version_id": version.id}
        deployment = self._new_deployment(existing, [{"version_id": version.id, "percentage": 100.0}],
                                          metadata.get("annotations"))
        return {**existing.public(), "startup_time_ms": 3, "deployment_id": version.id,
                "version_id": version.id, "pipeline_hash": deployment["id"]}

    def _new_version(self, script: Script, metadata: dict, modules: dict[str, Module], bindings: list) -> Version:
        version = Version(str(uuid.uuid4()), len(script.versions) + 1, script.name, self.now(), dict(metadata),
                          dict(modules), bindings, hidden_reads=self.hidden_version_reads)
        script.versions.append(version)
        self.creates["version"] += 1
        return version

    def _new_deployment(self, script: Script, versions: list[dict], annotations: dict | None) -> dict:
        deployment = {"id": str(uuid.uuid4()), "created_on": self.now(), "source": "api", "strategy": "percentage",
                      "author_email": "sim@flareship.test", "versions": versions,
                      "annotations": annotations or {}}
        script.deployments.append(deployment)
        self.creates["deployment"] += 1
        return deployment

    # -- versions & deployments -----------------------------------------------------------

    def get_version(self, account: Account, name: str, version_id: str) -> dict:
        script = self._script(account.id, name)
        version = script.version(version_id)
        if version is None:
            raise SimError(404, 10007, "version not found")
        if version.hidden_reads > 0:
            version.hidden_reads -= 1
            raise SimError(404, 100146, "This version could not be found. It may not be visible yet.")
        return version.public()

    def list_versions(self, account: Account, name: str) -> dict:
        script = self._script(account.id, name)
        return {"items": [v.public() for v in reversed(script.versions)]}

    def list_deployments(self, account: Account, name: str) -> dict:
        script = self._script(account.id, name)
        return {"deployments": list(reversed(script.deployments))}

    def create_deployment(self, account: Account, name: str, body: dict, *, force: bool) -> dict:
        script = self._script(account.id, name)
        versions = body.get("versions") or []
        if not 1 <= len(versions) <= 2:
            raise SimError(400, 10021, "a deployment has one or two versions")
        if abs(sum(float(v.get("percentage", 0)) for v in versions) - 100) > 1e-6:
            raise SimError(400, 10021, "version percentages must sum to 100")
        for v in versions:
            if script.version(v.get("version_id", "")) is None:
                raise SimError(400, 10021, f"version {v.get('version_id')} does not exist")
        newest = script.versions[-1].id
        if script.rollback_needs_force and not force and any(v["version_id"] != newest for v in versions):
            raise SimError(400, 10220, "Secrets have changed since the version you are rolling back to; confirm"
                                       " with force=true")
        return self._new_deployment(script, [{"version_id": v["version_id"], "percentage": float(v["percentage"])}
                                             for v in versions], body.get("annotations"))

    def get_service(self, account: Account, name: str) -> dict:
        script = self.scripts.get((account.id, name))
        if script is None:
            raise SimError(404, 10090, "workers.api.error.service_not_found")
        return {"id": name, "created_on": script.created_on, "modified_on": script.modified_on,
                "usage_model": "standard",
                "default_environment": {"environment": "production", "created_on": script.created_on,
                                        "modified_on": script.modified_on, "script": script.public()},
                "environments": [{"environment": "production", "created_on": script.created_on,
                                  "modified_on": script.modified_on}]}

    def delete_script(self, account: Account, name: str) -> None:
        self._script(account.id, name)
        self.scripts.pop((account.id, name))
        self.storage.forget_script(account.id, name)
        self.previews.forget_worker(account.id, name)
        for ns_id in [i for i, ns in self.namespaces.items() if ns.account_id == account.id and ns.script == name]:
            self.namespaces.pop(ns_id)

    # -- URLs -------------------------------------------------------------------------------

    def get_account_subdomain(self, account: Account) -> dict:
        if not account.subdomain:
            raise SimError(404, 10007, "This account does not have a workers.dev subdomain")
        return {"subdomain": account.subdomain}

    def put_account_subdomain(self, account: Account, body: dict) -> dict:
        wanted = body.get("subdomain") or body.get("name")
        if not wanted or not re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", wanted):
            raise SimError(400, 10032, "invalid subdomain")
        for other in self.accounts.values():
            if other.id != account.id and other.subdomain == wanted:
                raise SimError(409, 10031, "This subdomain is already taken")
        if account.subdomain != wanted:
            self.creates["subdomain"] += 1
        account.subdomain = wanted
        return {"subdomain": wanted}

    def script_subdomain(self, account: Account, name: str, body: dict | None = None) -> dict:
        script = self._script(account.id, name)
        if body is not None:
            script.subdomain_enabled = bool(body.get("enabled"))
            script.previews_enabled = bool(body.get("previews_enabled", script.previews_enabled))
        return {"enabled": script.subdomain_enabled, "previews_enabled": script.previews_enabled}

    def _zone(self, token: Token, zone_id: str) -> dict:
        zone = self.zones.get(zone_id)
        if zone is None:
            raise SimError(404, 7003, f"Could not route to /zones/{zone_id}, perhaps your object identifier is"
                                      " invalid?")
        self._usable(token)
        if zone["account_id"] not in token.account_ids or not token.allows("workers_routes:edit"):
            raise SimError(403, 10000, "Authentication error")
        return zone

    def list_routes(self, token: Token, zone_id: str) -> list[dict]:
        self._zone(token, zone_id)
        return [r for r in self.routes.values() if r["zone_id"] == zone_id]

    def create_route(self, token: Token, zone_id: str, body: dict) -> dict:
        self._zone(token, zone_id)
        if any(r["pattern"] == body["pattern"] and r["zone_id"] == zone_id for r in self.routes.values()):
            raise SimError(409, 10020, "A route with the same pattern already exists")
        route = {"id": self.new_id(), "pattern": body["pattern"], "script": body.get("script"), "zone_id": zone_id}
        self.routes[route["id"]] = route
        self.creates["route"] += 1
        return {k: v for k, v in route.items() if k != "zone_id"}

    def update_route(self, token: Token, zone_id: str, route_id: str, body: dict) -> dict:
        self._zone(token, zone_id)
        route = self.routes.get(route_id)
        if route is None or route["zone_id"] != zone_id:
            raise SimError(404, 10020, "route not found")
        route.update(pattern=body["pattern"], script=body.get("script"))
        return {k: v for k, v in route.items() if k != "zone_id"}

    def put_domain(self, account: Account, body: dict) -> dict:
        zone = self.zones.get(body["zone_id"])
        if zone is None or zone["account_id"] != account.id:
            raise SimError(404, 7003, "zone not found")
        if not body["hostname"].endswith(zone["name"]):
            raise SimError(400, 100116, "hostname is not in the zone")
        for domain in self.domains.values():
            if domain["hostname"] == body["hostname"]:
                domain.update(service=body["service"], environment=body["environment"])
                return domain
        domain = {"id": self.new_id(), "zone_id": zone["id"], "zone_name": zone["name"], **body}
        self.domains[domain["id"]] = domain
        self.creates["domain"] += 1
        return domain

    # -- Containers --------------------------------------------------------------------------

    def registry_credentials(self, account: Account, domain: str, body: dict) -> dict:
        self.containers_me(account)
        if domain != self.registry_host:
            raise SimError(400, 1000, f"unknown registry {domain}")
        password = "cfreg_" + secrets.token_urlsafe(24)
        expires = datetime.now(UTC) + timedelta(minutes=int(body["expiration_minutes"]))
        self.registry_passwords[password] = (account.id, set(body["permissions"]), expires)
        return {"account_id": account.id, "registry_host": self.registry_host, "username": "v1",
                "password": password}

    def check_registry_password(self, password: str, permission: str, repository: str) -> bool:
        entry = self.registry_passwords.get(password)
        if entry is None:
            return False
        account_id, permissions, expires = entry
        return (permission in permissions and expires > datetime.now(UTC)
                and repository.split("/", 1)[0] == account_id)

    def _application(self, account: Account, app_id: str) -> dict:
        app = self.applications.get(app_id)
        if app is None or app["account_id"] != account.id:
            raise SimError(404, 1000, "application not found")
        return app

    def list_applications(self, account: Account, name: str | None) -> list[dict]:
        return [a for a in self.applications.values()
                if a["account_id"] == account.id and (name is None or a["name"] == name)]

    def create_application(self, account: Account, body: dict) -> dict:
        self.containers_me(account)
        if self.list_applications(account, body["name"]):
            raise SimError(409, 1000, f"an application named {body['name']} already exists")
        ns_id = (body.get("durable_objects") or {}).get("namespace_id")
        if ns_id:
            ns = self.namespaces.get(ns_id)
            if ns is None or ns.account_id != account.id:
                raise SimError(400, 1000, f"durable object namespace {ns_id} does not exist")
            if not ns.use_sqlite:
                raise SimError(400, 1000, "container Durable Objects must be SQLite-backed")
        self._check_image(account, body["configuration"]["image"])
        now = self.now()
        app = {"id": self.new_id(), "account_id": account.id, "name": body["name"], "version": 1,
               "created_at": now, "updated_at": now, "scheduling_policy": body["scheduling_policy"],
               "instances": 0, "max_instances": body.get("max_instances", 20),
               "configuration": dict(body["configuration"]), "constraints": body.get("constraints") or {},
               "rollout_active_grace_period": body.get("rollout_active_grace_period", 0),
               "health": {"instances": {"healthy": 0, "failed": 0, "starting": 0, "scheduling": 0}}}
        if ns_id:
            app["durable_objects"] = {"namespace_id": ns_id}
        self.applications[app["id"]] = app
        self.creates["application"] += 1
        return app

    def _check_image(self, account: Account, image: str) -> None:
        host, _, rest = image.partition("/")
        if host == self.registry_host and not rest.startswith(account.id + "/"):
            raise SimError(400, 1000, f"image {image} is not in this account's registry")

    def patch_application(self, account: Account, app_id: str, body: dict) -> dict:
        app = self._application(account, app_id)
        if "configuration" in body:
            if "image" in body["configuration"]:
                self._check_image(account, body["configuration"]["image"])
            app["configuration"] = {**app["configuration"], **body["configuration"]}
        for key in ("max_instances", "scheduling_policy", "constraints", "rollout_active_grace_period"):
            if key in body:
                app[key] = body[key]
        app["version"] += 1
        app["updated_at"] = self.now()
        return app

    def delete_application(self, account: Account, app_id: str) -> dict:
        self._application(account, app_id)
        self.applications.pop(app_id)
        return {"id": app_id}

    def create_rollout(self, account: Account, app_id: str, body: dict) -> dict:
        app = self._application(account, app_id)
        if body.get("step_percentage") is None and not body.get("steps"):
            raise SimError(400, 1000, "a rollout needs step_percentage or steps")
        now = self.now()
        current = dict(app["configuration"])
        target = {**current, **body["target_configuration"]}
        rollout = {"id": self.new_id(), "description": body["description"], "created_at": now,
                   "last_updated_at": now, "started_at": now, "kind": body.get("kind", "full_auto"),
                   "strategy": body["strategy"], "status": "completed", "current_version": app["version"],
                   "target_version": app["version"] + 1, "current_configuration": current,
                   "target_configuration": target,
                   "progress": {"total_steps": len(body.get("steps") or [1]),
                                "current_step": len(body.get("steps") or [1]),
                                "updated_instances": app["max_instances"], "total_instances": app["max_instances"]},
                   "application_id": app_id}
        self.rollouts[rollout["id"]] = rollout
        self.creates["rollout"] += 1
        app["configuration"] = target
        app["version"] += 1
        app["active_rollout_id"] = rollout["id"]
        app["updated_at"] = now
        return {k: v for k, v in rollout.items() if k != "application_id"}

    def get_rollout(self, account: Account, app_id: str, rollout_id: str) -> dict:
        self._application(account, app_id)
        rollout = self.rollouts.get(rollout_id)
        if rollout is None or rollout["application_id"] != app_id:
            raise SimError(404, 1000, "rollout not found")
        return {k: v for k, v in rollout.items() if k != "application_id"}

    # -- serving Workers ---------------------------------------------------------------------

    def find_served(self, subdomain: str, script_name: str) -> tuple[Script, Version] | None:
        for account in self.accounts.values():
            if account.subdomain == subdomain:
                script = self.scripts.get((account.id, script_name))
                if script is None or not script.subdomain_enabled:
                    return None
                version = script.version(script.live_version_id() or "")
                return (script, version) if version else None
        return None

    def container_images(self, script: Script) -> dict[str, str]:
        """application name -> image, for the container applications behind the script's DOs
        (so a served Worker shows which image answers, and a container rollback is visible)."""
        namespaces = {ns.id for ns in self.namespaces.values()
                      if ns.account_id == script.account_id and ns.script == script.name}
        return {app["name"]: app["configuration"].get("image") for app in self.applications.values()
                if (app.get("durable_objects") or {}).get("namespace_id") in namespaces}

    def health_of(self, script: str, version_id: str) -> str:
        return self.worker_health.get((script, version_id)) or self.worker_health.get((script, None)) or "healthy"

    # -- queries for tests ---------------------------------------------------------------------

    def script(self, account_id: str, name: str) -> Script | None:
        return self.scripts.get((account_id, name))

    def count_requests(self, method: str, path_fragment: str = "") -> int:
        return sum(1 for m, p, _ in self.requests if m == method.upper() and path_fragment in p)
