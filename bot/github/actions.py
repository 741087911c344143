"""GitHub Actions reads for build artifacts: workflow runs of a SHA, artifacts by name, the zip.

Endpoints (all need the installation's `actions: read`, bot/github/permissions.py):
`GET /repos/{owner}/{repo}/actions/runs?head_sha=`, `GET .../actions/artifacts?name=` and
`GET .../actions/artifacts/{id}/zip`, which answers 302 to a short-lived blob URL
(https://docs.github.com/en/rest/actions/artifacts#download-an-artifact). The blob host must not
see the installation token, so the redirect is followed by hand with no credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp
from gidgethub import sansio

from bot.errors import FlareshipError
from bot.github.client import API_VERSION, FlareshipGitHubAPI

#: A build artifact larger than this is refused before it is read in full.
MAX_ARTIFACT_BYTES = 200 * 1024 * 1024
PER_PAGE = 100


@dataclass(frozen=True)
class WorkflowRun:
    id: int
    name: str
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str

    @property
    def active(self) -> bool:
        """Queued, waiting, requested, pending or in progress: the artifact may still come."""
        return self.status != "completed"


@dataclass(frozen=True)
class Artifact:
    id: int
    name: str
    size_in_bytes: int
    expired: bool
    created_at: str
    run_id: int | None
    head_sha: str | None
    #: "sha256:<hex>" of the zip (GitHub sends it for artifacts uploaded by upload-artifact v4+).
    digest: str | None = None


def _repo_path(repository: str) -> str:
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise FlareshipError("SYS_006", f"repository must be 'owner/name', got {repository!r}")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _run(data: dict[str, Any]) -> WorkflowRun:
    return WorkflowRun(id=int(data["id"]), name=str(data.get("name") or data.get("display_title") or ""),
                       status=str(data.get("status") or "queued"), conclusion=data.get("conclusion"),
                       html_url=str(data.get("html_url") or ""), head_sha=str(data.get("head_sha") or ""))


def _artifact(data: dict[str, Any]) -> Artifact:
    run = data.get("workflow_run") or {}
    return Artifact(id=int(data["id"]), name=str(data.get("name") or ""),
                    size_in_bytes=int(data.get("size_in_bytes") or 0), expired=bool(data.get("expired")),
                    created_at=str(data.get("created_at") or ""),
                    run_id=int(run["id"]) if run.get("id") is not None else None,
                    head_sha=run.get("head_sha"), digest=data.get("digest") or None)


async def runs_for_sha(gh: FlareshipGitHubAPI, repository: str, sha: str) -> list[WorkflowRun]:
    """Every workflow run of `sha` (first page of 100: a SHA rarely has more)."""
    data: Any = await gh.getitem(_repo_path(repository) + "/actions/runs{?head_sha,per_page}",
                                 {"head_sha": sha, "per_page": PER_PAGE})
    return [_run(r) for r in (data or {}).get("workflow_runs") or [] if r.get("head_sha", sha) == sha]


async def artifacts_named(gh: FlareshipGitHubAPI, repository: str, name: str) -> list[Artifact]:
    """Artifacts called `name`, newest first (GitHub's order; sorted again to be sure)."""
    data: Any = await gh.getitem(_repo_path(repository) + "/actions/artifacts{?name,per_page}",
                                 {"name": name, "per_page": PER_PAGE})
    found = [_artifact(a) for a in (data or {}).get("artifacts") or [] if a.get("name") == name]
    return sorted(found, key=lambda a: (a.created_at, a.id), reverse=True)


def newest_for_sha(artifacts: list[Artifact], sha: str) -> tuple[Artifact | None, Artifact | None]:
    """(the newest unexpired artifact of `sha`, the newest expired one) among `artifacts`."""
    mine = [a for a in artifacts if a.head_sha == sha]
    live = next((a for a in mine if not a.expired), None)
    expired = next((a for a in mine if a.expired), None)
    return live, expired


async def download_artifact(gh: FlareshipGitHubAPI, repository: str, artifact_id: int, *,
                            max_bytes: int = MAX_ARTIFACT_BYTES) -> bytes:
    """The artifact's zip. The API answers 302 to a blob URL, fetched without the GitHub token."""
    url = sansio.format_url(_repo_path(repository) + f"/actions/artifacts/{int(artifact_id)}/zip", {},
                            base_url=gh.base_url)
    headers = sansio.create_headers(gh.requester, accept="application/vnd.github+json")
    headers["x-github-api-version"] = API_VERSION
    # FlareshipGitHubAPI keeps its token provider and session private; they are used here only
    # to stop at the redirect, which gidgethub's request path would follow with the token.
    auth = getattr(gh, "_auth", None)
    if auth is not None:
        headers["authorization"] = await auth()
    session: aiohttp.ClientSession = gh._session
    try:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            status = response.status
            location = response.headers.get("location")
            if status in (301, 302, 303, 307, 308) and location:
                blob_url = urljoin(url, location)
            elif 200 <= status < 300:
                return await _read_capped(response, max_bytes)
            elif status == 410:
                raise FlareshipError("DEPLOY_001", f"build artifact {artifact_id} has expired",
                                     details={"field": "app.build.artifact"})
            else:
                raise FlareshipError("SYS_002", f"GitHub answered {status} to the artifact download")
        async with session.get(blob_url, headers={"user-agent": gh.requester}, allow_redirects=True) as blob:
            if blob.status != 200:
                raise FlareshipError("SYS_002", f"the artifact's blob storage answered {blob.status}")
            return await _read_capped(blob, max_bytes)
    except aiohttp.ClientError as exc:
        raise FlareshipError("SYS_002", f"the build artifact could not be downloaded ({type(exc).__name__})") from exc


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, refusing one larger than `max_bytes` without reading past the cap."""
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise FlareshipError("DEPLOY_001", f"the build artifact is larger than {max_bytes} bytes",
                             details={"field": "app.build.artifact"})
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise FlareshipError("DEPLOY_001", f"the build artifact is larger than {max_bytes} bytes",
                                 details={"field": "app.build.artifact"})
        chunks.append(chunk)
    return b"".join(chunks)

