"""Pushing an OCI image layout tarball (what `docker buildx build --output type=oci` writes).

The layout (https://github.com/opencontainers/image-spec/blob/v1.1.1/image-layout.md) holds
`oci-layout`, `index.json` and `blobs/<alg>/<hex>`. Every blob is checked against its digest
before it is pushed; manifests are pushed children first, then the top one under the tag.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from bot.cloudflare.registry import ImageRef, Manifest, RegistryClient, sha256_digest
from bot.engine.images import RegistryTarget
from bot.errors import FlareshipError

MAX_LAYOUT_BYTES = 2 * 1024 * 1024 * 1024
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
FIELD = "app.build.image"


def _bad(message: str) -> FlareshipError:
    return FlareshipError("DEPLOY_001", f"app.build.image: {message}", details={"field": FIELD})


def read_layout(data: bytes) -> dict[str, bytes]:
    """The layout's regular files by path (no links, no escaping paths, bounded)."""
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115  (closed by the `with` below)
    except tarfile.TarError:
        raise _bad("not a tar archive (expected an OCI image layout)") from None
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        for member in archive:
            name = member.name[2:] if member.name.startswith("./") else member.name
            if member.isdir():
                continue
            if not member.isfile() or name.startswith("/") or ".." in name.split("/"):
                raise _bad(f"unsafe entry {member.name!r} in the layout")
            total += member.size
            if total > MAX_LAYOUT_BYTES:
                raise _bad(f"the layout is larger than {MAX_LAYOUT_BYTES} bytes")
            handle = archive.extractfile(member)
            files[name] = handle.read() if handle is not None else b""
    if "index.json" not in files:
        raise _bad("no index.json: not an OCI image layout (use --output type=oci,dest=image.tar)")
    return files


class Layout:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        digest = str(descriptor.get("digest") or "")
        algorithm, _, hex_part = digest.partition(":")
        content = self.files.get(f"blobs/{algorithm}/{hex_part}")
        if content is None or algorithm != "sha256":
            raise _bad(f"blob {digest} is missing from the layout")
        if sha256_digest(content) != digest:
            raise _bad(f"blob {digest} does not match its digest")
        return content

    def top(self) -> dict[str, Any]:
        try:
            index = json.loads(self.files["index.json"])
            manifests = index["manifests"]
        except (ValueError, KeyError, TypeError):
            raise _bad("index.json is not an OCI image index") from None
        if not manifests:
            raise _bad("index.json lists no image")
        return dict(manifests[0])


async def _push_manifest(registry: RegistryClient, layout: Layout, target: ImageRef, descriptor: dict[str, Any],
                         reference: str | None) -> Manifest:
    content = layout.blob(descriptor)
    media_type = str(descriptor.get("mediaType") or json.loads(content).get("mediaType") or MANIFEST_TYPES[0])
    manifest = Manifest(content=content, media_type=media_type, digest=str(descriptor["digest"]))
    if media_type in INDEX_TYPES:
        for child in manifest.json.get("manifests") or []:
            await _push_manifest(registry, layout, target, child, None)
    else:
        for blob in manifest.blobs():
            await registry.push_blob(target, blob["digest"], layout.blob(blob))
    await registry.put_manifest(target, reference or manifest.digest, manifest)
    return manifest


async def push_layout(registry: RegistryClient, data: bytes, target: ImageRef) -> ImageRef:
    """Push the layout's image to `target` (its tag names it); returns the target pinned by digest."""
    layout = Layout(read_layout(data))
    top = await _push_manifest(registry, layout, target, layout.top(), target.tag)
    return target.pinned(top.digest)


def built_destination(target: RegistryTarget, account_id: str, app_name: str, sha: str | None) -> ImageRef:
    """`{registry}/{account}/{app}:{sha}`: the deployed SHA tags the image CI built for it."""
    return ImageRef(target.host, f"{account_id}/{app_name}", sha or "latest", None, target.scheme)
