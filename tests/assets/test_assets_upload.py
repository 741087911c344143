"""Static assets through the real HTTP stack: wrangler's manifest hashes, the upload session, only
missing files uploaded with the session JWT, and the simulated Worker serving them."""

from __future__ import annotations

import base64

import httpx
from blake3 import blake3

from bot.cloudflare.assets import asset_hash, build_manifest, content_type, sync_assets
from bot.sim.cloudflare.assets import assets_of, serve_asset
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID

FILES = {"index.html": b"<h1>shop</h1>", "app.js": b"console.log(1)", "img/logo.svg": b"<svg/>",
         "_headers": b"/*\n  X-Test: 1\n", "404.html": b"gone"}


def test_hash_is_wranglers():
    # deploy-helpers/src/deploy/helpers/hash.ts: blake3(base64(contents) + extension).hex.slice(0, 32)
    expected = blake3(base64.b64encode(b"<h1>shop</h1>") + b"html").hexdigest()[:32]
    assert asset_hash("index.html", b"<h1>shop</h1>") == expected
    assert asset_hash("a/b.tar.gz", b"x") == blake3(base64.b64encode(b"x") + b"gz").hexdigest()[:32]
    manifest = build_manifest(FILES)
    assert sorted(manifest) == ["/404.html", "/app.js", "/img/logo.svg", "/index.html"]  # _headers is not an asset
    assert manifest["/index.html"] == {"hash": expected, "size": 13}
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("blob.unknownext") == "application/null"


async def test_only_missing_files_are_uploaded(cloudflare_sim, cloudflare_client):
    first = await sync_assets(cloudflare_client, CF_ACCOUNT_ID, "shop", FILES)
    state = assets_of(cloudflare_sim.sim)
    assert first.uploaded == 4 and len(state.uploaded) == 4 and first.jwt
    again = await sync_assets(cloudflare_client, CF_ACCOUNT_ID, "shop", FILES)
    assert again.uploaded == 0 and len(state.uploaded) == 4  # unchanged assets: no file sent
    changed = dict(FILES, **{"app.js": b"console.log(2)"})
    third = await sync_assets(cloudflare_client, CF_ACCOUNT_ID, "shop", changed)
    assert third.uploaded == 1 and state.uploaded[-1] == asset_hash("app.js", b"console.log(2)")
    served = serve_asset(cloudflare_sim.sim, {"assets": {"jwt": third.jwt, "config": {
        "html_handling": "auto-trailing-slash", "not_found_handling": "404-page"}}}, "/")
    assert served is not None and served.body == b"<h1>shop</h1>"
    missing = serve_asset(cloudflare_sim.sim, {"assets": {"jwt": third.jwt, "config": {
        "not_found_handling": "404-page"}}}, "/nope")
    assert missing is not None and missing.status == 404 and missing.body == b"gone"


async def test_upload_needs_the_session_jwt(cloudflare_sim):
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{cloudflare_sim.url}/accounts/{CF_ACCOUNT_ID}/workers/assets/upload",
                                   params={"base64": "true"}, headers={"Authorization": "Bearer not-a-session"},
                                   files=[("0" * 32, ("0" * 32, b"eA==", "text/plain"))])
    assert response.status_code == 401 and response.json()["success"] is False
