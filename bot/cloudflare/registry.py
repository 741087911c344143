"""OCI distribution client: resolve a tag to a digest and copy an image between registries.

Blobs are streamed from the source straight into the target (a layer is never held in memory),
blobs the target already has are skipped, a same-host copy uses a cross-repository mount, and the
manifest is pushed with its own media type and checked against the digest of its exact bytes.
Auth: Basic (Cloudflare's registry wants `v1:<password>`), or the Bearer token flow a
`WWW-Authenticate: Bearer realm=...` challenge asks for (public registries).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from bot.cloudflare.errors import CloudflareError
from bot.logs import redact, register_secret

log = logging.getLogger("flareship.registry")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class RegistryError(CloudflareError):
    """A registry answered with an error (`{errors:[{code, message, detail}]}`) or was unreachable."""

    def __init__(self, message: str, *, status: int | None = None, errors: list | None = None,
                 retry_after: float | None = None):
        self.status = status
        self.errors = [{"code": e.get("code"), "message": redact(str(e.get("message", "")))}
                       for e in (errors or []) if isinstance(e, dict)]
        self.retry_after = retry_after
        first = f" {self.errors[0]['code']}: {self.errors[0]['message']}" if self.errors else ""
        super().__init__(redact(f"{message}{first}" + (f" [HTTP {status}]" if status else "")))

    @property
    def code(self) -> str | None:
        return self.errors[0]["code"] if self.errors else None


@dataclass(frozen=True)
class ImageRef:
    """`[scheme://]host[:port]/repo[:tag][@digest]`."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    scheme: str = "https"

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def pinned(self, digest: str) -> ImageRef:
        return ImageRef(self.host, self.repository, None, digest, self.scheme)

    def __str__(self) -> str:
        out = f"{self.host}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def default_scheme(host: str) -> str:
    bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return "http" if bare in LOOPBACK_HOSTS else "https"


def parse_image_ref(ref: str, *, scheme: str | None = None) -> ImageRef:
    """Parse an image reference; Docker Hub short names become registry-1.docker.io/library/..."""
    text = ref.strip()
    explicit = None
    if "://" in text:
        explicit, text = text.split("://", 1)
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError(f"invalid digest in image reference {ref!r}")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "registry-1.docker.io", text
        if "/" not in path:
            path = "library/" + path
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if not path or not re.match(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", path):
        raise ValueError(f"invalid repository in image reference {ref!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host, path, tag, digest, explicit or scheme or default_scheme(host))


def with_query(url: str, **params: str) -> str:
    """Add query parameters to an upload `Location` that may already carry its own (httpx's
    `params=` would replace them, losing the registry's upload state)."""
    return str(httpx.URL(url).copy_merge_params(params))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    content: bytes
    media_type: str
    digest: str

    @property
    def json(self) -> dict:
        return json.loads(self.content)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def blobs(self) -> list[dict]:
        """Config then layers (descriptors with digest and size)."""
        data = self.json
        return ([data["config"]] if data.get("config") else []) + list(data.get("layers") or [])


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class RegistryClient:
    """Talks OCI distribution to any number of registries (credentials per host)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        username: str | None = None,
        password: str | None = None,
        credentials: dict[str, tuple[str, str]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_attempts: int = 3,
        backoff_base: float = 0.2,
        chunk_size: int = 1 << 16,
    ):
        self._http = http
        self._default_creds = (username, password) if username and password else None
        self._creds: dict[str, tuple[str, str]] = dict(credentials or {})
        for _user, secret in self._creds.values():
            register_secret(secret)
        if password:
            register_secret(password)
        self._tokens: dict[tuple[str, str], str] = {}
        self._sleep = sleep
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.chunk_size = chunk_size
        #: (method, kind) counts, e.g. ("PUT", "blob"), so tests can see skipped blobs.
        self.stats: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"RegistryClient(hosts={sorted(self._creds)!r}, credentials=***)"

    def set_credentials(self, host: str, username: str, password: str) -> None:
        register_secret(password)
        self._creds[host] = (username, password)

    def _count(self, method: str, kind: str) -> None:
        self.stats[(method, kind)] = self.stats.get((method, kind), 0) + 1

    def _basic(self, host: str) -> str | None:
        creds = self._creds.get(host) or self._default_creds
        if not creds:
            return None
        return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    def _auth_header(self, host: str, repository: str) -> dict[str, str]:
        token = self._tokens.get((host, repository))
        if token:
            return {"Authorization": f"Bearer {token}"}
        basic = self._basic(host)
        return {"Authorization": basic} if basic else {}

    async def _fetch_token(self, host: str, repository: str, challenge: dict[str, str]) -> None:
        realm = challenge.get("realm")
        if not realm:
            raise RegistryError(f"registry {host} asked for a token without a realm", status=401)
        params = {k: v for k, v in challenge.items() if k in ("service", "scope")}
        if "scope" not in params:
            params["scope"] = f"repository:{repository}:pull,push"
        headers = {}
        basic = self._basic(host)
        if basic:
            headers["Authorization"] = basic
        response = await self._http.get(realm, params=params, headers=headers)
        if response.status_code != 200:
            raise RegistryError(f"token service of {host} refused", status=response.status_code)
        data = response.json()
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryError(f"token service of {host} returned no token", status=response.status_code)
        register_secret(token)
        self._tokens[(host, repository)] = token

    async def _send(self, method: str, image: ImageRef, path: str, *, kind: str, headers: dict | None = None,
                    content=None, params: dict | None = None, url: str | None = None,
                    retry: bool = True, stream: bool = False) -> httpx.Response:
        """One registry request with auth (Basic, or Bearer after a challenge) and safe retries."""
        attempt = 0
        authed_again = False
        while True:
            attempt += 1
            target = url or f"{image.base_url}/v2/{image.repository}{path}"
            all_headers = {**self._auth_header(image.host, image.repository), **(headers or {})}
            self._count(method, kind)
            try:
                request = self._http.build_request(method, target, headers=all_headers, content=content,
                                                   params=params)
                # Registries redirect blob reads to storage (307); httpx drops the Authorization
                # header when a redirect leaves the host.
                response = await self._http.send(request, stream=stream,
                                                 follow_redirects=method in ("GET", "HEAD"))
            except httpx.TransportError as exc:
                if not retry or attempt >= self.max_attempts:
                    raise RegistryError(f"registry {image.host} unreachable ({type(exc).__name__})") from None
                await self._sleep(self.backoff_base * 2 ** (attempt - 1) + random.uniform(0, self.backoff_base))
                continue
            if response.status_code == 401 and not authed_again:
                challenge = response.headers.get("www-authenticate", "")
                scheme, params_ = _parse_challenge(challenge)
                if stream:
                    await response.aclose()
                if scheme == "bearer":
                    await self._fetch_token(image.host, image.repository, params_)
                    authed_again = True
                    continue
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = response.headers.get("retry-after")
                if stream:
                    await response.aclose()
                wait = float(retry_after) if retry_after and retry_after.isdigit() else (
                    self.backoff_base * 2 ** (attempt - 1))
                if retry and attempt < self.max_attempts and wait <= 60:
                    await self._sleep(wait + random.uniform(0, self.backoff_base))
                    continue
            return response

    @staticmethod
    async def _error(response: httpx.Response, what: str) -> RegistryError:
        try:
            body = await response.aread()
            errors = json.loads(body).get("errors") if body else None
        except (ValueError, AttributeError, httpx.StreamError):
            errors = None
        return RegistryError(what, status=response.status_code, errors=errors,
                             retry_after=float(response.headers["retry-after"])
                             if response.headers.get("retry-after", "").isdigit() else None)

    # -- reading ----------------------------------------------------------------------

    async def get_manifest(self, image: ImageRef, reference: str | None = None) -> Manifest:
        ref = reference or image.reference
        response = await self._send("GET", image, f"/manifests/{ref}", kind="manifest",
                                    headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code != 200:
            raise await self._error(response, f"cannot read manifest {image.repository}:{ref} on {image.host}")
        content = response.content
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        try:
            media_type = json.loads(content).get("mediaType") or media_type
        except ValueError:
            raise RegistryError(f"manifest {image} is not JSON") from None
        digest = sha256_digest(content)
        if ref.startswith("sha256:") and ref != digest:
            raise RegistryError(f"manifest of {image} does not match its digest {ref}")
        return Manifest(content, media_type, digest)

    async def resolve(self, ref: str | ImageRef) -> ImageRef:
        """Tag -> digest (HEAD with the manifest Accept types; GET when no digest header)."""
        image = parse_image_ref(ref) if isinstance(ref, str) else ref
        if image.digest:
            return image
        response = await self._send("HEAD", image, f"/manifests/{image.reference}", kind="manifest",
                                    headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 200 and DIGEST_RE.match(response.headers.get("docker-content-digest", "")):
            return image.pinned(response.headers["docker-content-digest"])
        if response.status_code not in (200, 405):
            raise await self._error(response, f"image {image} not found")
        manifest = await self.get_manifest(image)
        return image.pinned(manifest.digest)

    async def manifest_exists(self, image: ImageRef, reference: str) -> bool:
        response = await self._send("HEAD", image, f"/manifests/{reference}", kind="manifest",
                                    headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise await self._error(response, f"cannot check manifest {reference} on {image.host}")

    async def blob_exists(self, image: ImageRef, digest: str) -> bool:
        response = await self._send("HEAD", image, f"/blobs/{digest}", kind="blob")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise await self._error(response, f"cannot check blob {digest} on {image.host}")

    # -- writing ----------------------------------------------------------------------

    def _location(self, image: ImageRef, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"registry {image.host} gave no upload location", status=response.status_code)
        return urljoin(f"{image.base_url}/v2/{image.repository}/blobs/uploads/", location)

    async def _start_upload(self, image: ImageRef, params: dict | None = None) -> httpx.Response:
        response = await self._send("POST", image, "/blobs/uploads/", kind="upload", params=params,
                                    headers={"Content-Length": "0"})
        if response.status_code not in (201, 202):
            raise await self._error(response, f"cannot start an upload on {image.host}")
        return response

    async def _mount(self, source: ImageRef, target: ImageRef, digest: str) -> bool:
        response = await self._start_upload(target, {"mount": digest, "from": source.repository})
        return response.status_code == 201

    async def push_blob(self, target: ImageRef, digest: str, data: bytes) -> None:
        """Monolithic upload of in-memory bytes (small blobs: configs, generated layers)."""
        if await self.blob_exists(target, digest):
            return
        location = self._location(target, await self._start_upload(target))
        response = await self._send("PUT", target, "", kind="blob", url=with_query(location, digest=digest),
                                    content=data, headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 201:
            raise await self._error(response, f"upload of {digest} to {target.host} failed")

    async def _stream_blob(self, source: ImageRef, target: ImageRef, descriptor: dict) -> None:
        digest = descriptor["digest"]
        attempt = 0
        while True:
            attempt += 1
            location = self._location(target, await self._start_upload(target))
            source_response = await self._send("GET", source, f"/blobs/{digest}", kind="blob-read", stream=True)
            try:
                if source_response.status_code != 200:
                    raise await self._error(source_response, f"cannot read blob {digest} from {source.host}")
                size = source_response.headers.get("content-length") or descriptor.get("size")
                headers = {"Content-Type": "application/octet-stream"}
                if size is not None:
                    headers["Content-Length"] = str(size)
                response = await self._send(
                    "PUT", target, "", kind="blob", url=with_query(location, digest=digest),
                    content=source_response.aiter_raw(self.chunk_size), headers=headers, retry=False,
                )
            except RegistryError:
                if attempt >= self.max_attempts:
                    raise
                await self._sleep(self.backoff_base * attempt)
                continue
            finally:
                await source_response.aclose()
            if response.status_code == 201:
                return
            if attempt >= self.max_attempts or (response.status_code < 500 and response.status_code != 429):
                raise await self._error(response, f"upload of {digest} to {target.host} failed")
            await self._sleep(self.backoff_base * attempt)

    async def copy_blob(self, source: ImageRef, target: ImageRef, descriptor: dict) -> str:
        """'skipped', 'mounted' or 'copied'."""
        digest = descriptor["digest"]
        if await self.blob_exists(target, digest):
            return "skipped"
        if (source.host == target.host and source.scheme == target.scheme and source.repository != target.repository
                and await self._mount(source, target, digest)):
            return "mounted"
        await self._stream_blob(source, target, descriptor)
        return "copied"

    async def put_manifest(self, target: ImageRef, reference: str, manifest: Manifest) -> str:
        """PUT the exact bytes with their media type; check the registry computed the same digest."""
        response = await self._send("PUT", target, f"/manifests/{reference}", kind="manifest",
                                    content=manifest.content, headers={"Content-Type": manifest.media_type})
        if response.status_code not in (200, 201):
            raise await self._error(response, f"cannot push manifest {target.repository}:{reference}")
        returned = response.headers.get("docker-content-digest")
        if returned and returned != manifest.digest:
            raise RegistryError(f"registry stored the manifest as {returned}, expected {manifest.digest}")
        return manifest.digest

    async def copy_image(self, source: str | ImageRef, target: str | ImageRef) -> ImageRef:
        """Copy `source` into `target` (a repo, optionally with a tag); returns the target pinned by digest.

        Nothing is written when the target already holds the manifest's digest.
        """
        src = parse_image_ref(source) if isinstance(source, str) else source
        dst = parse_image_ref(target) if isinstance(target, str) else target
        top = await self.get_manifest(src)
        pinned = dst.pinned(top.digest)
        if await self.manifest_exists(dst, top.digest):
            if dst.tag and not await self._tag_points_to(dst, top.digest):
                await self.put_manifest(dst, dst.tag, top)
            return pinned
        children = [top]
        if top.is_index:
            children = []
            for entry in top.json.get("manifests") or []:
                children.append(await self.get_manifest(src, entry["digest"]))
        for manifest in children:
            for descriptor in manifest.blobs():
                await self.copy_blob(src, dst, descriptor)
            if manifest is not top:
                await self.put_manifest(dst, manifest.digest, manifest)
        await self.put_manifest(dst, dst.tag or top.digest, top)
        return pinned

    async def _tag_points_to(self, image: ImageRef, digest: str) -> bool:
        response = await self._send("HEAD", image, f"/manifests/{image.tag}", kind="manifest",
                                    headers={"Accept": MANIFEST_ACCEPT})
        return response.status_code == 200 and response.headers.get("docker-content-digest") == digest
