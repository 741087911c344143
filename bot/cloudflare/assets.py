"""Static assets, uploaded as wrangler does (workers-sdk packages/deploy-helpers/src/deploy/helpers/assets.ts).

1. A manifest `{"/path": {hash, size}}`; the hash is wrangler's (`helpers/hash.ts`): BLAKE3 of the
   file's base64 text followed by its extension (no dot), hex, first 32 characters.
2. `POST .../workers/scripts/{script}/assets-upload-session {manifest}` answers the buckets of
   hashes Cloudflare lacks and a JWT (the completion token itself when nothing is missing).
3. Each bucket goes to `POST .../workers/assets/upload?base64=true` as multipart (one part per
   hash, base64 content) with the session JWT as Bearer; the last answer carries the completion
   token. Redeploying unchanged assets therefore uploads no file.
The completion token goes into the upload metadata as `assets.jwt` (bot/engine/metadata.py).
"""

from __future__ import annotations

import base64
import mimetypes
import posixpath
from dataclasses import dataclass
from typing import Any, Protocol

from blake3 import blake3  # type: ignore[import-not-found,unused-ignore]

from bot.errors import FlareshipError

#: workers-shared utils/constants.ts.
MAX_ASSET_SIZE = 25 * 1024 * 1024
MAX_ASSET_COUNT = 100_000
#: Files wrangler never uploads as assets (helpers.ts createAssetsIgnoreFunction).
META_FILES = (".assetsignore", "_redirects", "_headers")


class _Transport(Protocol):
    async def call(self, method: str, path: str, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class AssetsUpload:
    jwt: str
    #: How many files were sent (0 when Cloudflare had them all).
    uploaded: int
    total: int


def asset_hash(path: str, content: bytes) -> str:
    extension = posixpath.splitext(path)[1][1:]
    return blake3(base64.b64encode(content) + extension.encode()).hexdigest()[:32]


def content_type(path: str) -> str:
    """wrangler's getContentType: a text type gets `charset=utf-8`; unknown is `application/null`."""
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/null"
    if guessed.startswith("text/") and "charset" not in guessed:
        guessed += "; charset=utf-8"
    return guessed


def build_manifest(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """`{"/path": {hash, size}}` of the assets folder's files (relative paths), as wrangler builds it."""
    manifest: dict[str, dict[str, Any]] = {}
    for path in sorted(files):
        if path in META_FILES:
            continue
        content = files[path]
        if len(content) > MAX_ASSET_SIZE:
            raise FlareshipError("DEPLOY_001", f"asset {path} is {len(content)} bytes; Cloudflare Workers supports "
                                 f"assets of up to {MAX_ASSET_SIZE} bytes", details={"field": "app.build.assets"})
        manifest["/" + path] = {"hash": asset_hash(path, content), "size": len(content)}
    if len(manifest) > MAX_ASSET_COUNT:
        raise FlareshipError("DEPLOY_001", f"{len(manifest)} assets; the limit is {MAX_ASSET_COUNT}",
                             details={"field": "app.build.assets"})
    return manifest


async def sync_assets(client: _Transport, account_id: str, script: str, files: dict[str, bytes]) -> AssetsUpload:
    """Upload the files Cloudflare lacks; returns the completion token for the Worker upload."""
    manifest = build_manifest(files)
    session = await client.call("POST", f"/accounts/{account_id}/workers/scripts/{script}/assets-upload-session",
                                json_body={"manifest": manifest})
    if not session or not session.get("jwt"):
        raise FlareshipError("DEPLOY_008", "Cloudflare answered the assets upload session without a token")
    buckets: list[list[str]] = session.get("buckets") or []
    if not any(buckets):
        return AssetsUpload(jwt=session["jwt"], uploaded=0, total=len(manifest))
    by_hash = {entry["hash"]: path for path, entry in manifest.items()}
    completion = ""
    sent = 0
    for bucket in buckets:
        parts: list[Any] = []
        for file_hash in bucket:
            path = by_hash.get(file_hash)
            if path is None:
                raise FlareshipError("DEPLOY_008", "Cloudflare asked for an asset that is not in the manifest")
            content = base64.b64encode(files[path[1:]])
            parts.append((file_hash, (file_hash, content, content_type(path))))
        result = await client.call("POST", f"/accounts/{account_id}/workers/assets/upload",
                                   params={"base64": "true"}, files=parts, idempotent=True,
                                   headers={"Authorization": f"Bearer {session['jwt']}"})
        sent += len(bucket)
        if result and result.get("jwt"):
            completion = result["jwt"]
    if not completion:
        raise FlareshipError("DEPLOY_008", "the assets upload finished without a completion token")
    return AssetsUpload(jwt=completion, uploaded=sent, total=len(manifest))
