"""Container images: resolve a tag to a digest and make sure the image is in the account's registry.

An image already on `CONTAINER_REGISTRY_URL`'s host is used as is, pinned by digest; an image
elsewhere is copied to `HOST/ACCOUNT_ID/NAME` first (blobs the target has are skipped), so the
deployed configuration always names `HOST/ACCOUNT_ID/NAME@sha256:...`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from cachetools import TTLCache

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.registry import ImageRef, RegistryClient, parse_image_ref
from bot.engine.ports import CloudflareAccounts
from bot.errors import FlareshipError


@dataclass
class RegistryTarget:
    host: str
    scheme: str


def registry_target(registry_url: str) -> RegistryTarget:
    parsed = urlparse(registry_url if "://" in registry_url else f"https://{registry_url}")
    return RegistryTarget(parsed.netloc, parsed.scheme or "https")


def parse_image(image: str, *, step: str | None = None) -> ImageRef:
    try:
        return parse_image_ref(image)
    except ValueError as exc:
        raise FlareshipError("DEPLOY_001", f"app.container.image: {exc}", step=step,
                             details={"field": "app.container.image"}) from None


def destination_for(source: ImageRef, target: RegistryTarget, account_id: str) -> ImageRef:
    """Where the image lives in the account's registry (a repository named after the image)."""
    if source.host == target.host:
        return ImageRef(source.host, source.repository, source.tag, None, target.scheme)
    name = source.repository.rsplit("/", 1)[-1]
    return ImageRef(target.host, f"{account_id}/{name}", source.tag or "latest", None, target.scheme)


#: Registry credentials last 15 minutes; each CloudflareClients reuses them for 10 (one request
#: less per image operation). Forgotten as soon as an image operation fails.
_CREDENTIALS: weakref.WeakKeyDictionary[object, TTLCache[tuple[str, str], Any]] = weakref.WeakKeyDictionary()


def _cache_for(clients: CloudflareAccounts) -> TTLCache[tuple[str, str], Any]:
    cache = _CREDENTIALS.get(clients)
    if cache is None:
        cache = _CREDENTIALS[clients] = TTLCache(maxsize=256, ttl=600)
    return cache


def forget_credentials(clients: CloudflareAccounts, account_id: str, target: RegistryTarget) -> None:
    _cache_for(clients).pop((account_id, target.host), None)


async def registry_client_for(cloudflare_client: CloudflareClient, clients: CloudflareAccounts, account_id: str,
                              target: RegistryTarget) -> RegistryClient:
    """A registry client with push/pull credentials for the account's registry host."""
    cache = _cache_for(clients)
    creds = cache.get((account_id, target.host))
    if creds is None:
        creds = await cloudflare_client.registry_credentials(account_id, target.host)
        cache[(account_id, target.host)] = creds
    registry = clients.registry()
    registry.set_credentials(target.host, creds.username, creds.password)
    if creds.registry_host and creds.registry_host != target.host:
        registry.set_credentials(creds.registry_host, creds.username, creds.password)
    return registry


async def resolve_digest(registry: RegistryClient, image: ImageRef, target: RegistryTarget) -> ImageRef:
    """The image pinned by digest (at its own registry)."""
    if image.host == target.host:
        image = ImageRef(image.host, image.repository, image.tag, image.digest, target.scheme)
    return await registry.resolve(image)


async def ensure_in_registry(registry: RegistryClient, image: ImageRef, target: RegistryTarget,
                             account_id: str) -> ImageRef:
    """Copy when needed; returns the account-registry reference pinned by digest."""
    destination = destination_for(image, target, account_id)
    if image.host == target.host:
        return await registry.resolve(destination if not image.digest else
                                      ImageRef(image.host, image.repository, None, image.digest, target.scheme))
    return await registry.copy_image(image, destination)


def configuration_image(ref: ImageRef) -> str:
    """`HOST/REPO@sha256:...` (no scheme: that is how Cloudflare names images)."""
    return f"{ref.host}/{ref.repository}@{ref.digest}"
