"""A minimal OCI distribution registry (bot/sim/specs/oci-distribution-subset.json), for the demo
and for tests when Debian's docker-registry is absent, plus helpers to build and seed a tiny image.

Implements GET /v2/, HEAD/GET/PUT manifests, HEAD/GET blobs, POST uploads (monolithic `digest=`,
cross-repo `mount`/`from`, or a session) and PUT upload sessions. Blobs are content-addressed and
linked per repository, so a mount is observable. Auth is optional: `authorize(request, action,
repository) -> bool` (the simulated Cloudflare checks `v1:<password>` Basic credentials).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from aiohttp import web

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = {OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST}
NAME_RE = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")

Authorize = Callable[[web.Request, str, str], bool]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class RegistryState:
    blobs: dict[str, bytes] = field(default_factory=dict)
    #: repository -> digests linked into it
    links: dict[str, set[str]] = field(default_factory=dict)
    #: repository -> digest -> (media type, bytes)
    manifests: dict[str, dict[str, tuple[str, bytes]]] = field(default_factory=dict)
    #: repository -> tag -> digest
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    uploads: dict[str, tuple[str, bytearray]] = field(default_factory=dict)
    #: ("PUT", "blob") ... counters so tests can see what was written
    writes: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.writes[kind] = self.writes.get(kind, 0) + 1

    def has_blob(self, repo: str, digest: str) -> bool:
        return digest in self.links.get(repo, set()) and digest in self.blobs

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        self.links.setdefault(repo, set()).add(digest)
        return digest

    def resolve(self, repo: str, reference: str) -> str | None:
        if DIGEST_RE.match(reference):
            return reference if reference in self.manifests.get(repo, {}) else None
        return self.tags.get(repo, {}).get(reference)

    def put_manifest(self, repo: str, reference: str, media_type: str, data: bytes) -> str:
        digest = digest_of(data)
        self.manifests.setdefault(repo, {})[digest] = (media_type, data)
        if not DIGEST_RE.match(reference):
            self.tags.setdefault(repo, {})[reference] = digest
        return digest


def _error(status: int, code: str, message: str, *, headers: dict | None = None) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": message, "detail": None}]}, status=status,
                             headers=headers)


def make_registry_routes(state: RegistryState, authorize: Authorize | None = None,
                         realm: str = "flareship-sim") -> list[web.RouteDef]:
    """The /v2/ routes, to add to any aiohttp application."""

    def denied(request: web.Request, action: str, repo: str) -> web.Response | None:
        if authorize is None or authorize(request, action, repo):
            return None
        if request.headers.get("Authorization"):
            return _error(403 if action == "push" else 401, "DENIED" if action == "push" else "UNAUTHORIZED",
                          "access denied", headers={"WWW-Authenticate": f'Basic realm="{realm}"'})
        return _error(401, "UNAUTHORIZED", "authentication required",
                      headers={"WWW-Authenticate": f'Basic realm="{realm}"'})

    async def base(request: web.Request) -> web.Response:
        if authorize is not None and not authorize(request, "pull", ""):
            return _error(401, "UNAUTHORIZED", "authentication required",
                          headers={"WWW-Authenticate": f'Basic realm="{realm}"'})
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    async def manifest(request: web.Request) -> web.StreamResponse:
        repo, reference = request.match_info["name"], request.match_info["reference"]
        if request.method == "PUT":
            if (resp := denied(request, "push", repo)) is not None:
                return resp
            media_type = request.content_type
            data = await request.read()
            if media_type not in MANIFEST_TYPES:
                return _error(400, "MANIFEST_INVALID", f"unsupported manifest media type {media_type}")
            try:
                parsed = json.loads(data)
            except ValueError:
                return _error(400, "MANIFEST_INVALID", "manifest is not JSON")
            if parsed.get("mediaType") and parsed["mediaType"] != media_type:
                return _error(400, "MANIFEST_INVALID", "Content-Type differs from the manifest's mediaType")
            if DIGEST_RE.match(reference) and reference != digest_of(data):
                return _error(400, "DIGEST_INVALID", "manifest digest does not match the reference")
            if not DIGEST_RE.match(reference) and not TAG_RE.match(reference):
                return _error(400, "TAG_INVALID", "invalid tag")
            if media_type in (OCI_INDEX, DOCKER_LIST):
                missing = [m["digest"] for m in parsed.get("manifests", [])
                           if m.get("digest") not in state.manifests.get(repo, {})]
            else:
                wanted = [parsed.get("config", {}).get("digest")] + [layer.get("digest") for layer in parsed.get("layers", [])]
                missing = [d for d in wanted if not d or not state.has_blob(repo, d)]
            if missing:
                return _error(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {missing[0]}")
            digest = state.put_manifest(repo, reference, media_type, data)
            state.count("manifest")
            return web.Response(status=201, headers={"Docker-Content-Digest": digest,
                                                     "Location": f"/v2/{repo}/manifests/{digest}"})
        if (resp := denied(request, "pull", repo)) is not None:
            return resp
        resolved = state.resolve(repo, reference)
        if resolved is None:
            if repo not in state.manifests:
                return _error(404, "NAME_UNKNOWN", f"repository {repo} not known to registry")
            return _error(404, "MANIFEST_UNKNOWN", f"manifest {reference} unknown")
        media_type, data = state.manifests[repo][resolved]
        headers = {"Docker-Content-Digest": resolved, "Content-Type": media_type, "Content-Length": str(len(data))}
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=data, headers=headers)

    async def blob(request: web.Request) -> web.StreamResponse:
        repo, digest = request.match_info["name"], request.match_info["digest"]
        if (resp := denied(request, "pull", repo)) is not None:
            return resp
        if not DIGEST_RE.match(digest):
            return _error(400, "DIGEST_INVALID", "invalid digest")
        if not state.has_blob(repo, digest):
            return _error(404, "BLOB_UNKNOWN", f"blob {digest} unknown to registry")
        data = state.blobs[digest]
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(len(data)),
                   "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=data, headers=headers)

    async def start_upload(request: web.Request) -> web.Response:
        repo = request.match_info["name"]
        if (resp := denied(request, "push", repo)) is not None:
            return resp
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source and state.has_blob(source, mount) and (authorize is None or authorize(request, "pull", source)):
                state.links.setdefault(repo, set()).add(mount)
                state.count("mount")
                return web.Response(status=201, headers={"Location": f"/v2/{repo}/blobs/{mount}",
                                                         "Docker-Content-Digest": mount})
        digest = request.query.get("digest")
        if digest:
            data = await request.read()
            if digest_of(data) != digest:
                return _error(400, "DIGEST_INVALID", "digest does not match the content")
            state.add_blob(repo, data)
            state.count("blob")
            return web.Response(status=201, headers={"Location": f"/v2/{repo}/blobs/{digest}",
                                                     "Docker-Content-Digest": digest})
        session = uuid.uuid4().hex
        state.uploads[session] = (repo, bytearray())
        return web.Response(status=202, headers={"Location": f"/v2/{repo}/blobs/uploads/{session}?state=sim",
                                                 "Docker-Upload-UUID": session, "Range": "0-0"})

    async def finish_upload(request: web.Request) -> web.Response:
        repo, session = request.match_info["name"], request.match_info["session_id"]
        if (resp := denied(request, "push", repo)) is not None:
            return resp
        upload = state.uploads.get(session)
        if upload is None or upload[0] != repo:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        digest = request.query.get("digest", "")
        buffer = upload[1]
        async for chunk in request.content.iter_chunked(1 << 16):
            buffer.extend(chunk)
        if not DIGEST_RE.match(digest) or digest_of(bytes(buffer)) != digest:
            return _error(400, "DIGEST_INVALID", "digest does not match the uploaded content")
        state.uploads.pop(session, None)
        state.add_blob(repo, bytes(buffer))
        state.count("blob")
        return web.Response(status=201, headers={"Location": f"/v2/{repo}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest})

    name = "{name:" + NAME_RE + "}"
    return [
        web.get("/v2/", base),
        web.route("*", f"/v2/{name}/manifests/{{reference}}", manifest),
        web.route("*", f"/v2/{name}/blobs/uploads/", start_upload),
        web.put(f"/v2/{name}/blobs/uploads/{{session_id}}", finish_upload),
        web.route("*", f"/v2/{name}/blobs/{{digest}}", blob),
    ]


REGISTRY_STATE = web.AppKey("registry_state", RegistryState)


def make_registry_app(state: RegistryState | None = None, authorize: Authorize | None = None) -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    app[REGISTRY_STATE] = state or RegistryState()
    app.add_routes(make_registry_routes(app[REGISTRY_STATE], authorize))
    return app


# -- test images ---------------------------------------------------------------------------


@dataclass
class TestImage:
    """A tiny linux/amd64 image built in Python: gzip'd tar layers, a config and a manifest."""

    __test__ = False  # not a pytest class

    config: bytes
    layers: list[bytes]
    manifest: bytes
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def build_test_image(seed: str = "flareship", *, layers: int = 2, layer_bytes: int = 1024,
                     docker: bool = False, architecture: str = "amd64") -> TestImage:
    """Deterministic per seed (same seed, same digest); layer i depends only on (seed, i), so
    images built from one seed share their first layers. Layer content is incompressible, so
    `layer_bytes` is roughly the blob size."""
    layer_blobs = []
    for i in range(layers):
        payload = random.Random(f"{seed}/{i}").randbytes(layer_bytes)
        layer_blobs.append(_layer({f"app/file{i}.bin": payload}))
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() for blob in layer_blobs]
    config = json.dumps({
        "architecture": architecture, "os": "linux", "created": "2025-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/app/server"], "Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    layer_type = ("application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                  else "application/vnd.oci.image.layer.v1.tar+gzip")
    config_type = "application/vnd.docker.container.image.v1+json" if docker else "application/vnd.oci.image.config.v1+json"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": digest_of(blob), "size": len(blob)} for blob in layer_blobs],
    }, indent=2).encode()
    return TestImage(config, layer_blobs, manifest, media_type)


@dataclass
class TestIndex:
    """A multi-platform image: an OCI index over per-architecture images."""

    __test__ = False

    images: dict[str, TestImage]
    manifest: bytes
    media_type: str = OCI_INDEX

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def build_test_index(seed: str = "flareship", architectures: tuple[str, ...] = ("amd64", "arm64"),
                     **kw) -> TestIndex:
    images = {arch: build_test_image(f"{seed}/{arch}", architecture=arch, **kw) for arch in architectures}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
                       "platform": {"architecture": arch, "os": "linux"}} for arch, image in images.items()],
    }, indent=2).encode()
    return TestIndex(images, manifest)


def seed_image(state: RegistryState, repository: str, tag: str, image: TestImage) -> str:
    """Put `image` straight into a simulated registry's state; returns its digest."""
    for data in image.blobs():
        state.add_blob(repository, data)
    return state.put_manifest(repository, tag, image.media_type, image.manifest)


async def push_test_image(http, base_url: str, repository: str, tag: str, image: TestImage,
                          *, headers: dict | None = None) -> str:
    """Push `image` to any registry over HTTP (httpx.AsyncClient): monolithic blob uploads."""
    headers = headers or {}
    base = base_url.rstrip("/")
    for data in image.blobs():
        digest = digest_of(data)
        head = await http.head(f"{base}/v2/{repository}/blobs/{digest}", headers=headers)
        if head.status_code == 200:
            continue
        start = await http.post(f"{base}/v2/{repository}/blobs/uploads/", headers=headers)
        start.raise_for_status()
        location = start.headers["location"]
        if location.startswith("/"):
            location = base + location
        done = await http.put(str(httpx.URL(location).copy_merge_params({"digest": digest})), content=data,
                              headers={**headers, "Content-Type": "application/octet-stream"})
        done.raise_for_status()
    response = await http.put(f"{base}/v2/{repository}/manifests/{tag}", content=image.manifest,
                              headers={**headers, "Content-Type": image.media_type})
    response.raise_for_status()
    return response.headers.get("docker-content-digest") or image.digest


async def push_test_index(http, base_url: str, repository: str, tag: str, index: TestIndex,
                          *, headers: dict | None = None) -> str:
    """Push every platform image by digest, then the index under `tag`."""
    for image in index.images.values():
        await push_test_image(http, base_url, repository, image.digest, image, headers=headers)
    response = await http.put(f"{base_url.rstrip('/')}/v2/{repository}/manifests/{tag}", content=index.manifest,
                              headers={**(headers or {}), "Content-Type": index.media_type})
    response.raise_for_status()
    return response.headers.get("docker-content-digest") or index.digest


@dataclass
class RunningRegistry:
    url: str
    state: RegistryState
    runner: web.AppRunner

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_registry(host: str = "127.0.0.1", port: int = 0, *, state: RegistryState | None = None,
                         authorize: Authorize | None = None) -> RunningRegistry:
    """Serve a simulated registry on loopback (its own server)."""
    app = make_registry_app(state, authorize)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return RunningRegistry(f"http://{host}:{bound}", app[REGISTRY_STATE], runner)


__all__ = [
    "RegistryState",
    "RunningRegistry",
    "TestImage",
    "TestIndex",
    "build_test_image",
    "build_test_index",
    "digest_of",
    "make_registry_app",
    "make_registry_routes",
    "push_test_image",
    "push_test_index",
    "seed_image",
    "start_registry",
]
