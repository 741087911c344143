"""Image copy into the (simulated) Cloudflare registry under faults on each registry call."""

from __future__ import annotations

import httpx
import pytest

from bot.cloudflare import RegistryClient, RegistryError
from bot.engine.failures import catalogue_error
from bot.sim.registry import build_test_image, seed_image, start_registry
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID as ACC

CALLS = {
    "head-blob": ("HEAD", "/v2/*/blobs/sha256:*"),
    "start-upload": ("POST", "/v2/*/blobs/uploads/"),
    "put-blob": ("PUT", "/v2/*/blobs/uploads/*"),
    "put-manifest": ("PUT", "/v2/*/manifests/*"),
    "head-manifest": ("HEAD", "/v2/*/manifests/*"),
}
FAULTS = {
    "429": dict(status=429, retry_after=1),
    "500": dict(status=500),
    "503-after": dict(status=503, after=True),
    "timeout": dict(delay=0.4),
    "reset": dict(reset=True),
    "reset-after": dict(reset=True, after=True),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_copy_survives_registry_faults(call, cloudflare_sim, cloudflare_client, cloudflare_clock):
    source = await start_registry()
    image = build_test_image(f"faults-{call}")
    seed_image(source.state, "acme/app", "v1", image)
    creds = await cloudflare_client.registry_credentials(ACC, cloudflare_sim.registry_host)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.15)) as http:
            registry = RegistryClient(http, credentials={cloudflare_sim.registry_host: (creds.username, creds.password)},
                                      sleep=cloudflare_clock.sleep)
            for n, (name, fault) in enumerate(FAULTS.items()):
                repo = f"{ACC}/app{n}"
                method, pattern = CALLS[call]
                cloudflare_sim.sim.faults.clear()
                injected = cloudflare_sim.sim.inject_fault(method, pattern, **fault)
                target = f"{cloudflare_sim.registry_host}/{repo}:v1"
                try:
                    copied = await registry.copy_image(f"{source.host}/acme/app:v1", target)
                except RegistryError as exc:  # a clean failure: the step is retried
                    assert catalogue_error(exc, "Uploading container").code == "DEPLOY_003"
                    assert creds.password not in str(exc)
                    copied = await registry.copy_image(f"{source.host}/acme/app:v1", target)
                assert injected.hits == 1, f"{call}/{name}: fault never fired"
                assert copied.digest == image.digest
                stored = cloudflare_sim.registry.manifests[repo]
                assert list(stored) == [image.digest]
                assert cloudflare_sim.registry.tags[repo] == {"v1": image.digest}
    finally:
        await source.close()
