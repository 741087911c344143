"""Finding, waiting for and unpacking the build artifact of a deployed SHA (docs/build-workflow.md).

The artifact's zip comes from outside and is read in memory with the checks such an archive
deserves: no absolute or escaping paths, no links, a cap on files and on inflated bytes (the
zip's own sizes are not trusted; inflation stops at the cap).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import posixpath
import stat
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.engine.artifact_cache import ArtifactCache, cache_key
from bot.engine.build import BuildConfig
from bot.engine.model import STEP_NAMES
from bot.engine.source import MODULE_TYPES, Module
from bot.errors import FlareshipError
from bot.github import actions
from bot.github.actions import Artifact, WorkflowRun
from bot.github.client import FlareshipGitHubAPI

log = logging.getLogger(__name__)

MAX_INFLATED_BYTES = 500 * 1024 * 1024
MAX_FILES = 20_000
#: Seconds between looks at the workflow runs while a build is under way (BUILD_POLL_SECONDS).
DEFAULT_POLL_SECONDS = 15.0
FIELD = "app.build.artifact"


def _fail(message: str, runs: list[WorkflowRun] | None = None) -> FlareshipError:
    urls = [r.html_url for r in runs or [] if r.html_url]
    text = message + (": " + ", ".join(urls) if urls else "")
    return FlareshipError("DEPLOY_001", text, step=STEP_NAMES[0],
                          details={"field": FIELD, "runs": urls})


async def look(gh: FlareshipGitHubAPI, repository: str, sha: str, build: BuildConfig) -> Artifact | list[WorkflowRun]:
    """The newest unexpired artifact of the SHA, else the runs for it still under way.

    DEPLOY_001 when nothing can bring the artifact any more: it expired, no run built the SHA, or
    every run completed without it.
    """
    found, expired = actions.newest_for_sha(await actions.artifacts_named(gh, repository, build.artifact), sha)
    if found is not None:
        return found
    runs = await actions.runs_for_sha(gh, repository, sha)
    active = [r for r in runs if r.active]
    if active:
        return active
    if expired is not None:
        raise _fail(f"build artifact {build.artifact!r} of {sha[:7]} has expired; re-run the workflow", runs)
    if not runs:
        raise _fail(f"no workflow run built {sha[:7]} and no artifact {build.artifact!r} exists for it")
    raise _fail(f"the workflow run(s) of {sha[:7]} completed without an artifact named {build.artifact!r}", runs)


def timed_out(build: BuildConfig, sha: str, active: list[WorkflowRun]) -> FlareshipError:
    return _fail(f"no artifact {build.artifact!r} for {sha[:7]} after {build.timeout_minutes:g} minute(s)", active)


def waiting_message(run: WorkflowRun) -> str:
    """The log line (and so the check run's text) while a build is awaited: the run's link."""
    return f"Waiting for build: {run.name or 'workflow run'} {run.status} {run.html_url}"


@dataclass
class BuildWait:
    """One deployment's wait for its artifact; `started_at` is persisted, so a restart waits on."""

    gh: FlareshipGitHubAPI
    repository: str
    sha: str
    build: BuildConfig
    started_at: datetime
    clock: Callable[[], datetime]
    #: Called once per run that is waited on: tells the user (check run) what is awaited.
    announce: Callable[[WorkflowRun], Awaitable[None]]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    poll_seconds: float = DEFAULT_POLL_SECONDS
    announced: set[int] = field(default_factory=set)

    @property
    def deadline(self) -> datetime:
        return self.started_at + timedelta(minutes=self.build.timeout_minutes)

    async def artifact(self) -> Artifact:
        """The newest unexpired artifact of the SHA, waiting while a run for it is active."""
        while True:
            found = await look(self.gh, self.repository, self.sha, self.build)
            if isinstance(found, Artifact):
                return found
            if self.clock() >= self.deadline:
                raise timed_out(self.build, self.sha, found)
            for run in found:
                if run.id not in self.announced:
                    self.announced.add(run.id)
                    await self.announce(run)
            remaining = (self.deadline - self.clock()).total_seconds()
            await self.sleep(max(0.0, min(self.poll_seconds, remaining)))


def _safe_name(name: str) -> str | None:
    """The archive member's path inside the tree, or None when it must be skipped (a folder)."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise FlareshipError("DEPLOY_001", f"the build artifact holds an unsafe path {name!r}",
                             details={"field": FIELD})
    if name.endswith("/"):
        return None
    parts = name.split("/")
    if any(p in ("..", "") for p in parts) or "\0" in name:
        raise FlareshipError("DEPLOY_001", f"the build artifact holds an unsafe path {name!r}",
                             details={"field": FIELD})
    return "/".join(p for p in parts if p != ".")


def extract_zip(data: bytes, *, max_bytes: int = MAX_INFLATED_BYTES, max_files: int = MAX_FILES) -> dict[str, bytes]:
    """Every regular file of the zip by its path; DEPLOY_001 for a broken, unsafe or oversized zip."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise FlareshipError("DEPLOY_001", "the build artifact is not a valid zip", details={"field": FIELD}) from None
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        for info in archive.infolist():
            path = _safe_name(info.filename)
            if path is None:
                continue
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise FlareshipError("DEPLOY_001", f"the build artifact holds a link or special file {path!r}",
                                     details={"field": FIELD})
            if len(files) >= max_files:
                raise FlareshipError("DEPLOY_001", f"the build artifact holds more than {max_files} files",
                                     details={"field": FIELD})
            try:
                with archive.open(info) as member:
                    content = member.read(max_bytes - total + 1)
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError):
                raise FlareshipError("DEPLOY_001", f"the build artifact's {path} cannot be read",
                                     details={"field": FIELD}) from None
            total += len(content)
            if total > max_bytes:
                raise FlareshipError("DEPLOY_001", f"the build artifact inflates to more than {max_bytes} bytes",
                                     details={"field": FIELD})
            files[path] = content
    return files


@dataclass
class BuildOutput:
    """What a build artifact holds, laid out as docs/build-workflow.md names it."""

    modules: list[Module]
    #: Static assets by their path under the assets folder (`/index.html` -> `index.html`).
    assets: dict[str, bytes] | None
    #: The OCI image layout tarball, when `build.image` is set.
    image: bytes | None


def _folder_files(files: dict[str, bytes], folder: str) -> dict[str, bytes]:
    prefix = "" if folder in ("", ".") else folder.rstrip("/") + "/"
    return {path[len(prefix):]: content for path, content in files.items() if path.startswith(prefix)}


def layout(files: dict[str, bytes], build: BuildConfig, main: str) -> BuildOutput:
    """Split the artifact into the Worker bundle, the static assets and the image tarball."""
    if main not in files:
        raise FlareshipError("DEPLOY_001", f"the build artifact has no {main} at its root (app.build.main); "
                             f"it holds {', '.join(sorted(files)[:8]) or 'nothing'}",
                             details={"field": "app.build.main"})
    image: bytes | None = None
    if build.image:
        if build.image not in files:
            raise FlareshipError("DEPLOY_001", f"the build artifact has no {build.image} (app.build.image)",
                                 details={"field": "app.build.image"})
        image = files[build.image]
    assets_dir = build.assets
    if assets_dir is None and any(p.startswith("assets/") for p in files):
        assets_dir = "assets"
    assets = _folder_files(files, assets_dir) if assets_dir else None
    if build.assets and not assets:
        raise FlareshipError("DEPLOY_001", f"the build artifact has no files under {build.assets}/ (app.build.assets)",
                             details={"field": "app.build.assets"})
    skip_prefix = f"{assets_dir.rstrip('/')}/" if assets_dir else None
    main_type = MODULE_TYPES.get(posixpath.splitext(main)[1].lower())
    if main_type != "application/javascript+module":
        raise FlareshipError("DEPLOY_001", f"app.build.main {main} must be an ES module (.js or .mjs)",
                             details={"field": "app.build.main"})
    modules = [Module(main, files[main], main_type)]
    for path in sorted(files):
        if path == main or path == build.image or (skip_prefix and path.startswith(skip_prefix)):
            continue
        ctype = MODULE_TYPES.get(posixpath.splitext(path)[1].lower())
        if ctype is None or path.split("/")[0] == "node_modules":
            continue
        modules.append(Module(path, files[path], ctype))
    return BuildOutput(modules=modules, assets=assets, image=image)


def artifact_record(key: str, artifact: Artifact) -> dict[str, Any]:
    """What the deployment's state keeps of its downloaded artifact (StepState.build_artifact)."""
    return {"key": key, "id": artifact.id, "name": artifact.name, "size": artifact.size_in_bytes,
            "digest": artifact.digest, "run_id": artifact.run_id}


async def obtain(gh: FlareshipGitHubAPI, repository: str, artifact: Artifact,
                 cache: ArtifactCache | None) -> tuple[dict[str, Any], bytes]:
    """The artifact's zip from the cache, else downloaded once (digest checked) and cached."""
    key = cache_key(gh.base_url, repository, artifact)
    data = await cache.get(key) if cache is not None else None
    if data is not None and _digest_ok(data, artifact.digest):
        return artifact_record(key, artifact), data
    if artifact.size_in_bytes > actions.MAX_ARTIFACT_BYTES:
        raise FlareshipError("DEPLOY_001", f"build artifact {artifact.name!r} is {artifact.size_in_bytes} bytes "
                             f"(limit {actions.MAX_ARTIFACT_BYTES})", details={"field": FIELD})
    data = await actions.download_artifact(gh, repository, artifact.id)
    if not _digest_ok(data, artifact.digest):
        raise FlareshipError("DEPLOY_001", f"build artifact {artifact.id} does not match its digest "
                             f"{artifact.digest}", details={"field": FIELD})
    log.info("%s: build artifact %s downloaded (%d bytes)", repository, artifact.id, len(data))
    if cache is not None:
        await cache.put(key, data)
    return artifact_record(key, artifact), data


def _digest_ok(data: bytes, digest: str | None) -> bool:
    if not digest or not digest.startswith("sha256:"):
        return True  # older artifacts carry no digest
    return hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:").lower()


@dataclass
class BuildSource:
    """A deployment's build artifact: read from the cache when the wait already fetched it
    (`record`, persisted in the deployment's state), else waited for and downloaded once."""

    github: Callable[[], Awaitable[FlareshipGitHubAPI]]
    repository: str
    sha: str
    build: BuildConfig
    main: str
    #: When the wait began (persisted), so a resumed run keeps the deadline.
    started_at: datetime
    clock: Callable[[], datetime]
    announce: Callable[[str], Awaitable[None]]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    poll_seconds: float = DEFAULT_POLL_SECONDS
    cache: ArtifactCache | None = None
    #: The downloaded artifact (StepState.build_artifact); set here after a download.
    record: dict[str, Any] | None = None
    #: Told the record of a fresh download, to keep it in the deployment's state.
    remember: Callable[[dict[str, Any]], None] | None = None
    _output: BuildOutput | None = field(default=None, repr=False)

    async def _zip(self) -> bytes:
        if self.record is not None and self.cache is not None:
            data = await self.cache.get(str(self.record.get("key")))
            if data is not None and _digest_ok(data, self.record.get("digest")):
                return data

        async def tell(run: WorkflowRun) -> None:
            await self.announce(waiting_message(run))

        gh = await self.github()
        wait = BuildWait(gh=gh, repository=self.repository, sha=self.sha, build=self.build,
                         started_at=self.started_at, clock=self.clock, announce=tell, sleep=self.sleep,
                         poll_seconds=self.poll_seconds)
        self.record, data = await obtain(gh, self.repository, await wait.artifact(), self.cache)
        if self.remember is not None:
            self.remember(self.record)
        return data

    async def output(self) -> BuildOutput:
        if self._output is None:
            self._output = layout(extract_zip(await self._zip()), self.build, self.main)
        return self._output
