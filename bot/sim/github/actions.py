"""Simulated GitHub Actions: workflow runs and their artifacts (list, get, zip, expiry).

Shapes follow `workflow-run` and `artifact` of bot/sim/specs/github-openapi-subset.json. The zip
download answers 302 to a blob URL on the simulator (`/_blobs/{ticket}`), as GitHub redirects to
its blob storage; the blob answers without authentication and refuses any `Authorization`
header, so a client that forwards the installation token there fails the test that uses it.
Every route needs `actions: read`.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import zipfile
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from bot.sim.github.handlers import Call, Handler, Reply, error, not_found
from bot.sim.github.state import GitHubSim, iso

#: Artifacts live 90 days by default (GitHub's retention default).
RETENTION_SECONDS = 90 * 24 * 3600
BLOB_TTL = 60.0
READ = (("actions", "read"),)


@dataclass
class Run:
    id: int
    repo: str
    head_sha: str
    name: str = "build"
    head_branch: str = "main"
    status: str = "queued"
    conclusion: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class StoredArtifact:
    id: int
    repo: str
    run_id: int
    name: str
    zip_bytes: bytes
    created_at: float
    expires_at: float
    deleted: bool = False


@dataclass
class ActionsState:
    runs: dict[int, Run] = field(default_factory=dict)
    artifacts: dict[int, StoredArtifact] = field(default_factory=dict)
    #: blob ticket -> (artifact id, valid until)
    blobs: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: Every blob request: the `Authorization` header it carried (None when none).
    blob_auth: list[str | None] = field(default_factory=list)


_STATES: WeakKeyDictionary[GitHubSim, ActionsState] = WeakKeyDictionary()


def actions_of(sim: GitHubSim) -> ActionsState:
    """The Actions state of one simulated GitHub (created on first use)."""
    state = _STATES.get(sim)
    if state is None:
        state = _STATES[sim] = ActionsState()
    return state


def make_zip(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(path, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


# -- arranging a scenario -------------------------------------------------------------------


def add_run(sim: GitHubSim, repo: str, head_sha: str, *, status: str = "in_progress",
            conclusion: str | None = None, name: str = "build", head_branch: str = "main") -> Run:
    sim.repo(repo)
    now = sim.now()
    run = Run(sim.next_id(), repo, head_sha, name, head_branch, status, conclusion, now, now)
    actions_of(sim).runs[run.id] = run
    return run


def finish_run(sim: GitHubSim, run: Run, *, conclusion: str = "success",
               artifacts: dict[str, dict[str, bytes | str] | bytes] | None = None,
               retention_seconds: float = RETENTION_SECONDS) -> list[StoredArtifact]:
    """Complete `run`; each artifact is a file tree (zipped here) or a ready zip."""
    run.status, run.conclusion, run.updated_at = "completed", conclusion, sim.now()
    stored = []
    for name, content in (artifacts or {}).items():
        stored.append(add_artifact(sim, run, name, content, retention_seconds=retention_seconds))
    return stored


def add_artifact(sim: GitHubSim, run: Run, name: str, content: dict[str, bytes | str] | bytes, *,
                 retention_seconds: float = RETENTION_SECONDS) -> StoredArtifact:
    now = sim.now()
    data = content if isinstance(content, bytes) else make_zip(content)
    artifact = StoredArtifact(sim.next_id(), run.repo, run.id, name, data, now, now + retention_seconds)
    actions_of(sim).artifacts[artifact.id] = artifact
    return artifact


def expire(sim: GitHubSim, artifact: StoredArtifact) -> None:
    artifact.expires_at = sim.now() - 1


def workflow_run_completed(sim: GitHubSim, run: Run, *, installation_id: int, web_root: str) -> dict[str, Any]:
    """The `workflow_run` webhook GitHub sends when `run` completes (the fields Flareship reads)."""
    repo = sim.repo(run.repo)
    owner, _, name = run.repo.partition("/")
    return {
        "action": "completed",
        "workflow_run": {"id": run.id, "name": run.name, "head_sha": run.head_sha, "head_branch": run.head_branch,
                         "status": run.status, "conclusion": run.conclusion,
                         "html_url": f"{web_root}/{run.repo}/actions/runs/{run.id}"},
        "workflow": {"id": 1, "name": run.name, "path": ".github/workflows/build.yml"},
        "repository": {"id": repo.id, "name": name, "full_name": run.repo, "owner": {"login": owner},
                       "default_branch": "main"},
        "installation": {"id": installation_id},
        "sender": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
    }


# -- rendering ------------------------------------------------------------------------------


def _run_json(call: Call, run: Run) -> dict[str, Any]:
    repo = call.sim.repo(run.repo)
    web_root = call.server_root
    return {
        "id": run.id, "node_id": f"WFR_{run.id}", "name": run.name, "display_title": run.name,
        "head_branch": run.head_branch, "head_sha": run.head_sha, "path": ".github/workflows/build.yml",
        "run_number": run.id % 1000, "run_attempt": 1, "event": "push", "status": run.status,
        "conclusion": run.conclusion, "workflow_id": 1,
        "url": f"{call.api_root}/repos/{run.repo}/actions/runs/{run.id}",
        "html_url": f"{web_root}/{run.repo}/actions/runs/{run.id}",
        "artifacts_url": f"{call.api_root}/repos/{run.repo}/actions/runs/{run.id}/artifacts",
        "created_at": iso(run.created_at), "updated_at": iso(run.updated_at),
        "repository": {"id": repo.id, "full_name": repo.full_name},
    }


def _artifact_json(call: Call, artifact: StoredArtifact) -> dict[str, Any]:
    run = actions_of(call.sim).runs[artifact.run_id]
    repo = call.sim.repo(artifact.repo)
    base = f"{call.api_root}/repos/{artifact.repo}/actions/artifacts/{artifact.id}"
    return {
        "id": artifact.id, "node_id": f"MDg6QXJ0aWZhY3Q{artifact.id}", "name": artifact.name,
        "size_in_bytes": len(artifact.zip_bytes), "url": base, "archive_download_url": f"{base}/zip",
        "expired": artifact.expires_at <= call.sim.now(), "created_at": iso(artifact.created_at),
        "updated_at": iso(artifact.created_at), "expires_at": iso(artifact.expires_at),
        "digest": "sha256:" + hashlib.sha256(artifact.zip_bytes).hexdigest(),
        "workflow_run": {"id": run.id, "repository_id": repo.id, "head_repository_id": repo.id,
                         "head_branch": run.head_branch, "head_sha": run.head_sha},
    }


def _page(call: Call, items: list[Any]) -> list[Any]:
    try:
        per_page = max(1, min(100, int(call.query.get("per_page", "30"))))
        page = max(1, int(call.query.get("page", "1")))
    except ValueError:
        return items[:30]
    return items[(page - 1) * per_page:page * per_page]


# -- handlers -------------------------------------------------------------------------------


async def list_runs(call: Call) -> Reply:
    runs = [r for r in actions_of(call.sim).runs.values() if r.repo == call.repo.full_name]
    if "head_sha" in call.query:
        runs = [r for r in runs if r.head_sha == call.query["head_sha"]]
    if "status" in call.query:  # a status or a conclusion (spec README)
        wanted = call.query["status"]
        runs = [r for r in runs if wanted in (r.status, r.conclusion)]
    runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return Reply(200, {"total_count": len(runs), "workflow_runs": [_run_json(call, r) for r in _page(call, runs)]})


async def get_run(call: Call) -> Reply:
    run = actions_of(call.sim).runs.get(int(call.params["run_id"]))
    if run is None or run.repo != call.repo.full_name:
        return not_found()
    return Reply(200, _run_json(call, run))


def _artifacts(call: Call, run_id: int | None = None) -> list[StoredArtifact]:
    found = [a for a in actions_of(call.sim).artifacts.values()
             if a.repo == call.repo.full_name and not a.deleted and (run_id is None or a.run_id == run_id)]
    if "name" in call.query:
        found = [a for a in found if a.name == call.query["name"]]
    return sorted(found, key=lambda a: (a.created_at, a.id), reverse=True)


async def list_artifacts(call: Call) -> Reply:
    found = _artifacts(call)
    return Reply(200, {"total_count": len(found), "artifacts": [_artifact_json(call, a) for a in _page(call, found)]})


async def list_run_artifacts(call: Call) -> Reply:
    run_id = int(call.params["run_id"])
    if run_id not in actions_of(call.sim).runs:
        return not_found()
    found = _artifacts(call, run_id)
    return Reply(200, {"total_count": len(found), "artifacts": [_artifact_json(call, a) for a in _page(call, found)]})


def _artifact_of(call: Call) -> StoredArtifact | None:
    artifact = actions_of(call.sim).artifacts.get(int(call.params["artifact_id"]))
    if artifact is None or artifact.repo != call.repo.full_name or artifact.deleted:
        return None
    return artifact


async def get_artifact(call: Call) -> Reply:
    artifact = _artifact_of(call)
    return not_found() if artifact is None else Reply(200, _artifact_json(call, artifact))


async def download_artifact(call: Call) -> Reply:
    artifact = _artifact_of(call)
    if artifact is None or call.params["archive_format"] != "zip":
        return not_found()
    if artifact.expires_at <= call.sim.now():
        return error(410, "Artifact has expired")
    ticket = secrets.token_urlsafe(16)
    state = actions_of(call.sim)
    state.blobs[ticket] = (artifact.id, call.sim.now() + BLOB_TTL)
    location = f"{call.server_root}/_blobs/{ticket}?sig={secrets.token_hex(8)}"
    return Reply(302, b"", headers={"location": location}, content_type="text/html;charset=utf-8")


ROUTES: dict[tuple[str, str], tuple[Handler, str, tuple[tuple[str, str], ...]]] = {
    ("GET", "/repos/{owner}/{repo}/actions/runs"): (list_runs, "token", READ),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"): (get_run, "token", READ),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"): (list_run_artifacts, "token", READ),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts"): (list_artifacts, "token", READ),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}"): (get_artifact, "token", READ),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"):
        (download_artifact, "token", READ),
}


# -- the blob host ----------------------------------------------------------------------------

SIM_KEY = web.AppKey("github_actions_sim", GitHubSim)


async def serve_blob(request: web.Request) -> web.Response:
    """The signed blob URL: no credentials wanted, and a forwarded token is an error (Azure answers 400)."""
    sim = request.app[SIM_KEY]
    state = actions_of(sim)
    auth = request.headers.get("authorization")
    state.blob_auth.append(auth)
    if auth:
        return web.Response(status=400, text="Authentication information is not given in the correct format.")
    found = state.blobs.get(request.match_info["ticket"])
    if found is None or found[1] < sim.now():
        return web.Response(status=403, text="Server failed to authenticate the request.")
    artifact = state.artifacts[found[0]]
    return web.Response(body=artifact.zip_bytes, content_type="application/zip")


def add_pages(app: web.Application, sim: GitHubSim) -> None:
    """Register the blob host before the API's catch-all route."""
    app[SIM_KEY] = sim
    app.router.add_get("/_blobs/{ticket}", serve_blob)
