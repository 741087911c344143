"""Containers: account limits, registry credentials, applications and rollouts.

Mirrors wrangler's `containers deploy`: find the application by name; create it when missing, or
PATCH its configuration and start a rollout when it changed. Creates are never repeated blindly:
the application is looked up by name first (and after an ambiguous failure), and a rollout is
only started when no rollout already targets the wanted image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.cloudflare.errors import (
    Conflict,
    NotFound,
    ServerError,
    TransportError,
    UnexpectedResponse,
)
from bot.logs import register_secret

_AMBIGUOUS = (TransportError, ServerError, UnexpectedResponse)


@dataclass
class RegistryCredentials:
    registry_host: str
    username: str
    password: str
    account_id: str | None = None

    def __repr__(self) -> str:
        return f"RegistryCredentials(registry_host={self.registry_host!r}, username={self.username!r}, password=***)"


@dataclass
class ContainerDeployResult:
    application: dict
    created: bool
    rollout: dict | None = None
    changed: bool = False


def application_name(script: str, class_name: str) -> str:
    """`{script}-{class_name lowercased}`: one container application per Worker and class."""
    return f"{script}-{class_name.lower()}"


def rollout_steps(max_instances: int, percentage: int | list[int] | None = None) -> dict:
    """wrangler's rollout (packages/wrangler/src/containers/config.ts and deploy.ts
    `configRolloutStepsToAPI`): `rollout_step_percentage` when set, else 100 below two instances
    and [10, 100] from two on; a number is `step_percentage`, a list one step per percentage."""
    if percentage is None:
        percentage = 100 if max_instances < 2 else [10, 100]
    if isinstance(percentage, int):
        return {"step_percentage": percentage}
    return {"steps": [{"step_size": {"percentage": p},
                       "description": f"Step {i} of {len(percentage)} - rollout at {p}% of instances"}
                      for i, p in enumerate(percentage, start=1)]}


def instance_configuration(instance_type: str | dict) -> dict:
    """A named instance type, or wrangler's custom one as `disk`/`memory_mib`/`vcpu` (containers/deploy.ts)."""
    if isinstance(instance_type, str):
        return {"instance_type": instance_type}
    return {"disk": {"size_mb": instance_type.get("disk_mb", 2000)}, "memory_mib": instance_type.get("memory_mib", 256),
            "vcpu": instance_type.get("vcpu", 0.0625)}


def _config_differs(current: dict, wanted: dict) -> bool:
    return any(current.get(k) != v for k, v in wanted.items())


class ContainersAPI:
    """Mixin over CloudflareTransport."""

    if TYPE_CHECKING:  # provided by CloudflareTransport (bot/cloudflare/transport.py)
        async def call(self, method: str, path: str, **kw: Any) -> Any: ...

    async def registry_credentials(self, account_id: str, domain: str, *, permissions=("push", "pull"),
                                   expiration_minutes: int = 15) -> RegistryCredentials:
        """Short-lived push/pull credentials for `domain` (POST, but repeating it creates nothing)."""
        result = await self.call(
            "POST", f"/accounts/{account_id}/containers/registries/{domain}/credentials",
            json_body={"permissions": list(permissions), "expiration_minutes": expiration_minutes},
            idempotent=True,
        )
        register_secret(result.get("password"))
        return RegistryCredentials(result.get("registry_host") or domain, result.get("username") or "v1",
                                   result["password"], result.get("account_id"))

    async def list_applications(self, account_id: str, *, name: str | None = None) -> list[dict]:
        return await self.call("GET", f"/accounts/{account_id}/containers/applications",
                               params={"name": name} if name else None) or []

    async def find_application(self, account_id: str, name: str) -> dict | None:
        for app in await self.list_applications(account_id, name=name):
            if app.get("name") == name:
                return app
        return None

    async def get_application(self, account_id: str, application_id: str) -> dict:
        return await self.call("GET", f"/accounts/{account_id}/containers/applications/{application_id}")

    async def create_application(self, account_id: str, body: dict) -> dict:
        """Create, unless an application of that name exists (then return it)."""
        existing = await self.find_application(account_id, body["name"])
        if existing is not None:
            return existing
        try:
            return await self.call("POST", f"/accounts/{account_id}/containers/applications", json_body=body)
        except _AMBIGUOUS:
            existing = await self.find_application(account_id, body["name"])
            if existing is not None:
                return existing
            raise

    async def patch_application(self, account_id: str, application_id: str, body: dict) -> dict:
        """PATCH (same body twice = same result: retried like a PUT). Never sends `name`."""
        body = {k: v for k, v in body.items() if k != "name"}
        return await self.call("PATCH", f"/accounts/{account_id}/containers/applications/{application_id}",
                               json_body=body, idempotent=True)

    async def delete_application(self, account_id: str, application_id: str) -> None:
        await self.call("DELETE", f"/accounts/{account_id}/containers/applications/{application_id}")

    async def get_rollout(self, account_id: str, application_id: str, rollout_id: str) -> dict:
        return await self.call(
            "GET", f"/accounts/{account_id}/containers/applications/{application_id}/rollouts/{rollout_id}")

    async def _rollout_targeting(self, account_id: str, application: dict, image: str) -> dict | None:
        rollout_id = application.get("active_rollout_id")
        if not rollout_id:
            return None
        try:
            rollout = await self.get_rollout(account_id, application["id"], rollout_id)
        except NotFound:
            return None
        if (rollout.get("target_configuration") or {}).get("image") == image:
            return rollout
        return None

    async def create_rollout(self, account_id: str, application_id: str, target_configuration: dict, *,
                             description: str, max_instances: int = 1, kind: str = "full_auto",
                             step_percentage: int | list[int] | None = None) -> dict:
        """Start a rolling update to `target_configuration`; reuses a rollout already targeting it."""
        app = await self.get_application(account_id, application_id)
        image = target_configuration.get("image")
        existing = await self._rollout_targeting(account_id, app, image) if image else None
        if existing is not None:
            return existing
        body: dict[str, Any] = {"description": description, "strategy": "rolling",
                                "target_configuration": target_configuration, "kind": kind,
                                **rollout_steps(max_instances, step_percentage)}
        path = f"/accounts/{account_id}/containers/applications/{application_id}/rollouts"
        try:
            return await self.call("POST", path, json_body=body)
        except _AMBIGUOUS:
            app = await self.get_application(account_id, application_id)
            existing = await self._rollout_targeting(account_id, app, image) if image else None
            if existing is not None:
                return existing
            raise

    async def deploy_application(
        self,
        account_id: str,
        *,
        name: str,
        image: str,
        namespace_id: str,
        instance_type: str | dict = "lite",
        max_instances: int = 20,
        description: str = "Flareship deploy",
        step_percentage: int | list[int] | None = None,
        rollout_kind: str | None = None,
    ) -> ContainerDeployResult:
        """Make application `name` run `image` (create, or PATCH + rollout when it changed)."""
        configuration = {"image": image, **instance_configuration(instance_type),
                         "observability": {"logs": {"enabled": True}}}
        app = await self.find_application(account_id, name)
        if app is None:
            created = await self.create_application(account_id, {
                "name": name, "scheduling_policy": "default", "max_instances": max_instances,
                "configuration": configuration, "constraints": {"tiers": [1, 2]},
                "durable_objects": {"namespace_id": namespace_id}, "rollout_active_grace_period": 0,
            })
            return ContainerDeployResult(created, created=True, changed=True)
        bound = (app.get("durable_objects") or {}).get("namespace_id")
        if bound and bound != namespace_id:
            raise Conflict(409, [{"code": 409, "message": (
                f"container application {name} is bound to another Durable Object namespace")}])
        current = app.get("configuration") or {}
        wanted = {k: v for k, v in configuration.items() if k != "observability"}
        changed = _config_differs(current, wanted) or app.get("max_instances") != max_instances
        if changed:
            app = await self.patch_application(account_id, app["id"], {
                "configuration": configuration, "max_instances": max_instances,
            })
        rollout = await self._rollout_targeting(account_id, app, image)
        # A PATCHed application (version > 1) whose last rollout does not target the image still
        # needs one: that is the state a crash between PATCH and rollout leaves behind.
        if rollout is None and (changed or int(app.get("version") or 1) > 1):
            rollout = await self.create_rollout(account_id, app["id"], configuration, description=description,
                                                max_instances=max_instances, step_percentage=step_percentage,
                                                kind=rollout_kind or "full_auto")
        return ContainerDeployResult(app, created=False, rollout=rollout, changed=changed)
