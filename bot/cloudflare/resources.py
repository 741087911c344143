"""What a Worker binds to and what reaches it: KV, D1, R2, queues, secrets, schedules, routes, domains.

A mixin over CloudflareTransport (through `WorkersAPI`). Reads are plain GETs; every write is a
PUT, a DELETE or a POST that is looked up first by its caller (`bot.engine.triggers`), so a
repeated step converges instead of duplicating.
"""

from __future__ import annotations

from typing import Any, Protocol

SCRIPT_API_DATE_HEADER = {"Cloudflare-Workers-Script-Api-Date": "2025-08-01"}


class _Transport(Protocol):
    async def call(self, method: str, path: str, **kw: Any) -> Any: ...

    async def get_all(self, path: str, *, params: dict[str, Any] | None = None, per_page: int = 100,
                      max_pages: int = 50) -> list[Any]: ...


class ResourcesAPI:
    """Listings that pre-flight checks bindings against, and the Worker's triggers."""

    async def list_kv_namespaces(self: _Transport, account_id: str) -> list[dict[str, Any]]:
        return await self.get_all(f"/accounts/{account_id}/storage/kv/namespaces", per_page=100)

    async def list_d1_databases(self: _Transport, account_id: str) -> list[dict[str, Any]]:
        return await self.get_all(f"/accounts/{account_id}/d1/database", per_page=1000)

    async def list_r2_buckets(self: _Transport, account_id: str) -> list[dict[str, Any]]:
        result = await self.call("GET", f"/accounts/{account_id}/r2/buckets", params={"per_page": 1000}) or {}
        return result.get("buckets", []) if isinstance(result, dict) else list(result)

    async def list_queues(self: _Transport, account_id: str) -> list[dict[str, Any]]:
        return await self.call("GET", f"/accounts/{account_id}/queues") or []

    async def list_queue_consumers(self: _Transport, account_id: str, queue_id: str) -> list[dict[str, Any]]:
        return await self.call("GET", f"/accounts/{account_id}/queues/{queue_id}/consumers") or []

    async def add_queue_consumer(self: _Transport, account_id: str, queue_id: str,
                                 body: dict[str, Any]) -> Any:
        return await self.call("POST", f"/accounts/{account_id}/queues/{queue_id}/consumers", json_body=body)

    async def update_queue_consumer(self: _Transport, account_id: str, queue_id: str, consumer_id: str,
                                    body: dict[str, Any]) -> Any:
        """PUT: the consumer's settings and dead-letter queue as sent (wrangler's deploy does this)."""
        return await self.call("PUT", f"/accounts/{account_id}/queues/{queue_id}/consumers/{consumer_id}",
                               json_body=body)

    # -- secrets (set outside a deploy; every upload keeps them) ----------------------------

    async def list_secrets(self: _Transport, account_id: str, script: str) -> list[dict[str, Any]]:
        """Names and types only: Cloudflare never returns a secret's value."""
        return await self.call("GET", f"/accounts/{account_id}/workers/scripts/{script}/secrets") or []

    async def put_secret(self: _Transport, account_id: str, script: str, name: str, text: str) -> Any:
        return await self.call("PUT", f"/accounts/{account_id}/workers/scripts/{script}/secrets",
                               json_body={"name": name, "text": text, "type": "secret_text"}, idempotent=True)

    # -- triggers ------------------------------------------------------------------------

    async def get_schedules(self: _Transport, account_id: str, script: str) -> list[dict[str, Any]]:
        result = await self.call("GET", f"/accounts/{account_id}/workers/scripts/{script}/schedules") or {}
        return result.get("schedules", []) if isinstance(result, dict) else list(result)

    async def put_schedules(self: _Transport, account_id: str, script: str,
                            schedules: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Replace the cron triggers (wrangler triggers/deploy.ts sends `[{cron}]`)."""
        result = await self.call("PUT", f"/accounts/{account_id}/workers/scripts/{script}/schedules",
                                 json_body=schedules, idempotent=True) or {}
        return result.get("schedules", []) if isinstance(result, dict) else list(result)

    async def set_script_subdomain(self: _Transport, account_id: str, script: str,
                                   body: dict[str, Any]) -> Any:
        """workers.dev (and, only when given, preview URLs) on or off for one Worker."""
        return await self.call("POST", f"/accounts/{account_id}/workers/scripts/{script}/subdomain",
                               json_body=body, headers=SCRIPT_API_DATE_HEADER, idempotent=True)

    async def find_zone(self: _Transport, account_id: str, hostname: str) -> dict[str, Any] | None:
        """The account's zone serving `hostname` (longest matching zone name)."""
        labels = hostname.split(".")
        for i in range(len(labels) - 1):
            name = ".".join(labels[i:])
            zones = await self.call("GET", "/zones", params={"name": name, "account.id": account_id}) or []
            if zones:
                return dict(zones[0])
        return None

    async def create_route(self: _Transport, zone_id: str, pattern: str, script: str) -> Any:
        return await self.call("POST", f"/zones/{zone_id}/workers/routes",
                               json_body={"pattern": pattern, "script": script})

    async def update_route(self: _Transport, zone_id: str, route_id: str, pattern: str,
                           script: str) -> Any:
        return await self.call("PUT", f"/zones/{zone_id}/workers/routes/{route_id}",
                               json_body={"pattern": pattern, "script": script})

    async def delete_route(self: _Transport, zone_id: str, route_id: str) -> None:
        await self.call("DELETE", f"/zones/{zone_id}/workers/routes/{route_id}")

    async def detach_domain(self: _Transport, account_id: str, domain_id: str) -> None:
        await self.call("DELETE", f"/accounts/{account_id}/workers/domains/{domain_id}")
