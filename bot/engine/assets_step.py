"""The static assets of a Worker upload: found, synced (bot/cloudflare/assets.py), put in the metadata.

Assets come from the build artifact's assets folder (`app.build`), else from the repository's
`assets.directory` of the wrangler config at the deployed SHA. wrangler uploads them just before
the Worker and sends the completion token as `assets: {jwt, config}` (create-worker-upload-form.ts).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from bot.cloudflare.assets import sync_assets
from bot.engine.metadata import assets_config
from bot.errors import FlareshipError

if TYPE_CHECKING:
    from bot.engine.steps import StepContext


def _repository_assets(files: dict[str, bytes], directory: str) -> dict[str, bytes]:
    folder = posixpath.normpath(directory.replace("\\", "/").removeprefix("./"))
    if folder.startswith(("..", "/")):
        raise FlareshipError("DEPLOY_001", f"assets.directory {directory} must be inside the repository",
                             details={"field": "assets.directory"})
    prefix = "" if folder == "." else folder + "/"
    return {path[len(prefix):]: content for path, content in files.items() if path.startswith(prefix)}


async def asset_files(ctx: StepContext) -> dict[str, bytes] | None:
    """The files to serve as static assets (None: the app has none)."""
    if ctx.spec.build is not None and ctx.build is not None:
        return (await ctx.build.output()).assets
    directory = (ctx.spec.assets or {}).get("directory")
    if not isinstance(directory, str) or not directory:
        return None
    source = await ctx.load_source() if ctx.spec.source == "repository" else None
    if source is None:
        return None
    files = _repository_assets(source.files, directory)
    if not files:
        raise FlareshipError("DEPLOY_001", f"assets.directory {directory} holds no files at the deployed commit",
                             details={"field": "assets.directory"})
    return files


async def assets_metadata(ctx: StepContext, *, script: str | None = None) -> dict[str, Any] | None:
    """Upload what Cloudflare lacks and answer the metadata's `assets` (None without assets).

    `script`: the Worker whose upload session is used (default: the deployed one); a Worker
    Preview's assets go through its parent Worker's, as `wrangler preview` does (preview.ts).
    """
    files = await asset_files(ctx)
    if not files:
        return None
    upload = await sync_assets(ctx.client, ctx.account_id, script or ctx.spec.script_name, files)
    await ctx.log(f"Static assets: {upload.total} file(s), {upload.uploaded} uploaded"
                  + ("" if upload.uploaded else " (Cloudflare had them all)"))
    return {"jwt": upload.jwt, "config": assets_config(ctx.spec)}
