"""Image resolution and copy: against two real Debian docker-registry servers, and the sim registry."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest

from bot.cloudflare import RegistryClient, RegistryError, parse_image_ref
from bot.engine.failures import catalogue_error
from bot.sim.registry import build_test_image, push_test_image, start_registry
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, make_client


def test_parse_image_refs():
    ref = parse_image_ref("ghcr.io/acme/app:1.2")
    assert (ref.host, ref.repository, ref.tag, ref.scheme) == ("ghcr.io", "acme/app", "1.2", "https")
    ref = parse_image_ref("127.0.0.1:5000/acme/app@sha256:" + "a" * 64)
    assert ref.scheme == "http" and ref.digest.endswith("a" * 64) and ref.tag is None
    ref = parse_image_ref("nginx")
    assert (ref.host, ref.repository, ref.tag) == ("registry-1.docker.io", "library/nginx", "latest")
    ref = parse_image_ref("http://registry.local/team/app:v1")
    assert ref.scheme == "http" and ref.host == "registry.local"
    with pytest.raises(ValueError):
        parse_image_ref("ghcr.io/Acme/App:1")


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.mark.registry
async def test_resolve_and_copy_with_docker_registry(docker_registries, http):
    source, target = docker_registries
    image = build_test_image("real-registry", layers=3, layer_bytes=200_000)
    pushed = await push_test_image(http, source.url, "acme/app", "v1", image)
    assert pushed == image.digest

    registry = RegistryClient(http)
    resolved = await registry.resolve(f"{source.host}/acme/app:v1")
    assert resolved.digest == image.digest == "sha256:" + hashlib.sha256(image.manifest).hexdigest()

    copied = await registry.copy_image(resolved, f"{target.host}/cf-account/app:v1")
    assert copied.digest == image.digest and copied.host == target.host
    assert registry.stats[("PUT", "blob")] == 4  # config + 3 layers
    assert (await registry.resolve(f"{target.host}/cf-account/app:v1")).digest == image.digest
    manifest = await registry.get_manifest(copied)
    assert manifest.content == image.manifest  # byte-identical, so the digest is pinned

    # A second image sharing nothing but the first layer: that blob is skipped.
    registry.stats.clear()
    again = await registry.copy_image(resolved, f"{target.host}/cf-account/app:v1")
    assert again.digest == image.digest and registry.stats.get(("PUT", "blob"), 0) == 0
    assert registry.stats.get(("PUT", "manifest"), 0) == 0

    partial = build_test_image("real-registry", layers=4, layer_bytes=200_000)  # same first 3 layers + 1
    await push_test_image(http, source.url, "acme/app", "v2", partial)
    registry.stats.clear()
    await registry.copy_image(f"{source.host}/acme/app:v2", f"{target.host}/cf-account/app:v2")
    assert registry.stats[("PUT", "blob")] == 2  # the new layer and the new config only


@pytest.mark.registry
async def test_same_host_copy_mounts(docker_registries, http):
    source, _ = docker_registries
    image = build_test_image("mount-me")
    await push_test_image(http, source.url, "team/one", "v1", image)
    registry = RegistryClient(http)
    await registry.copy_image(f"{source.host}/team/one:v1", f"{source.host}/team/two:v1")
    assert registry.stats.get(("PUT", "blob"), 0) == 0  # every blob mounted, none streamed
    assert (await registry.resolve(f"{source.host}/team/two:v1")).digest == image.digest


@pytest.mark.registry
async def test_unknown_tag_is_a_registry_error(docker_registries, http):
    source, _ = docker_registries
    with pytest.raises(RegistryError) as err:
        await RegistryClient(http).resolve(f"{source.host}/nobody/here:v9")
    assert err.value.status == 404
    assert catalogue_error(err.value, "Uploading container").code == "DEPLOY_003"


async def test_copy_into_the_sim_registry_with_cloudflare_credentials(cloudflare_sim, cloudflare_http,
                                                                     cloudflare_clock, http):
    """Source: a standalone sim registry; target: the Cloudflare sim's registry, Basic v1:<password>."""
    source = await start_registry()
    try:
        image = build_test_image("to-cloudflare", docker=True)
        await push_test_image(http, source.url, "acme/web", "latest", image)
        client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock)
        creds = await client.registry_credentials(CF_ACCOUNT_ID, cloudflare_sim.registry_host)
        assert creds.username == "v1" and creds.password not in repr(creds)

        anonymous = RegistryClient(http)
        with pytest.raises(RegistryError) as err:
            await anonymous.copy_image(f"{source.host}/acme/web:latest",
                                       f"{cloudflare_sim.registry_host}/{CF_ACCOUNT_ID}/web:latest")
        assert err.value.status == 401

        registry = RegistryClient(http, credentials={cloudflare_sim.registry_host: (creds.username, creds.password)})
        copied = await registry.copy_image(f"{source.host}/acme/web:latest",
                                           f"{cloudflare_sim.registry_host}/{CF_ACCOUNT_ID}/web:latest")
        assert copied.digest == image.digest
        stored = cloudflare_sim.registry.manifests[f"{CF_ACCOUNT_ID}/web"][image.digest]
        assert stored == (image.media_type, image.manifest)

        # Another account's repository is refused with these credentials.
        with pytest.raises(RegistryError) as err:
            await registry.copy_image(f"{source.host}/acme/web:latest",
                                      f"{cloudflare_sim.registry_host}/{'f' * 32}/web:latest")
        assert err.value.status in (401, 403)
        header = "Basic " + base64.b64encode(f"v1:{creds.password}".encode()).decode()
        ok = await http.head(f"{cloudflare_sim.registry_url}/v2/{CF_ACCOUNT_ID}/web/manifests/latest",
                             headers={"Authorization": header})
        assert ok.status_code == 200 and ok.headers["docker-content-digest"] == image.digest
    finally:
        await source.close()


async def test_bearer_token_flow(http):
    """A registry answering 401 + WWW-Authenticate: Bearer realm=... gets a token and is retried."""
    from aiohttp import web

    from bot.sim.registry import RegistryState, make_registry_routes, seed_image

    state = RegistryState()
    image = build_test_image("bearer")
    seed_image(state, "library/app", "v1", image)
    issued = []

    def authorize(request, action, repository):
        return request.headers.get("Authorization") == "Bearer sekrit-registry-token"

    app = web.Application()
    app.add_routes(make_registry_routes(state, authorize))

    async def token(request):
        issued.append(dict(request.query))
        return web.json_response({"token": "sekrit-registry-token"})

    app.router.add_get("/token", token)

    @web.middleware
    async def challenge(request, handler):
        response = await handler(request)
        if response.status == 401:
            response.headers["WWW-Authenticate"] = (
                f'Bearer realm="http://{request.host}/token",service="sim",scope="repository:library/app:pull"')
        return response

    app.middlewares.append(challenge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        resolved = await RegistryClient(http).resolve(f"127.0.0.1:{port}/library/app:v1")
        assert resolved.digest == image.digest
        assert issued == [{"service": "sim", "scope": "repository:library/app:pull"}]
    finally:
        await runner.cleanup()


@pytest.mark.registry
async def test_copy_multi_platform_index(docker_registries, http):
    from bot.sim.registry import build_test_index, push_test_index

    source, target = docker_registries
    index = build_test_index("multi")
    await push_test_index(http, source.url, "acme/multi", "v1", index)
    registry = RegistryClient(http)
    resolved = await registry.resolve(f"{source.host}/acme/multi:v1")
    assert resolved.digest == index.digest
    copied = await registry.copy_image(resolved, f"{target.host}/cf/multi:v1")
    assert copied.digest == index.digest
    for image in index.images.values():
        assert await registry.manifest_exists(copied, image.digest)
    top = await registry.get_manifest(copied)
    assert top.content == index.manifest and top.is_index


@pytest.mark.registry
async def test_blobs_are_streamed_not_buffered(docker_registries, http):
    """A 24 MB layer crosses from one real registry to the other with a small peak of memory."""
    import tracemalloc

    source, target = docker_registries
    image = build_test_image("big-layer", layers=1, layer_bytes=24 * 1024 * 1024)
    await push_test_image(http, source.url, "acme/big", "v1", image)
    registry = RegistryClient(http)
    tracemalloc.start()
    try:
        copied = await registry.copy_image(f"{source.host}/acme/big:v1", f"{target.host}/cf/big:v1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert copied.digest == image.digest
    assert len(image.layers[0]) > 20 * 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while copying a 24 MB layer"


async def test_blob_reads_follow_redirects(http):
    """Registries send blob reads to storage with a 307; the copy follows it."""
    from aiohttp import web

    from bot.sim.registry import RegistryState, make_registry_routes, seed_image

    state = RegistryState()
    image = build_test_image("redirected")
    seed_image(state, "acme/app", "v1", image)
    app = web.Application()
    routes = make_registry_routes(state)

    async def storage(request):
        return web.Response(body=state.blobs[request.match_info["digest"]])

    @web.middleware
    async def redirect_blobs(request, handler):
        if request.method == "GET" and "/blobs/sha256:" in request.path:
            raise web.HTTPTemporaryRedirect(f"/storage/{request.path.rsplit('/', 1)[1]}")
        return await handler(request)

    app.middlewares.append(redirect_blobs)
    app.router.add_get("/storage/{digest}", storage)
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    target = await start_registry()
    try:
        copied = await RegistryClient(http).copy_image(f"127.0.0.1:{port}/acme/app:v1", f"{target.host}/cf/app:v1")
        assert copied.digest == image.digest
        assert all(target.state.has_blob("cf/app", b) for b in map(lambda d: "sha256:" + hashlib.sha256(d).hexdigest(),
                                                                  image.blobs()))
    finally:
        await runner.cleanup()
        await target.close()
