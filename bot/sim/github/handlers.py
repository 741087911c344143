"""The simulated GitHub's REST operations: one small function per (method, path template).

Each takes a `Call` (state, parsed request, the authenticated installation) and returns a
`Reply`. Authentication, spec validation, rate limits, faults and ETags are handled around
them in `bot.sim.github.server`; what remains here is GitHub's documented behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from multidict import MultiDict, MultiMapping

from bot.sim.github.state import (
    LEVELS,
    Comment,
    GitHubSim,
    IssuedToken,
    PullRequest,
    Repository,
    iso,
    user_json,
)

DOCS = "https://docs.github.com/rest"


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, or bytes for raw bodies
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Call:
    sim: GitHubSim
    method: str
    path: str
    params: dict[str, str]
    query: MultiMapping[str]
    body: Any
    accept: str
    #: scheme://host[:port][prefix] as the client sees it (for absolute URLs)
    api_root: str
    server_root: str
    token: IssuedToken | None = None
    #: the repository of a `/repos/{owner}/{repo}/...` route, set once the server has authorised it
    found_repo: Repository | None = None

    @property
    def repo(self) -> Repository:
        """The authorised repository; only repository routes read it, and the server sets it for them."""
        if self.found_repo is None:
            raise LookupError(f"{self.path} is not a repository route")
        return self.found_repo


Handler = Callable[[Call], Awaitable[Reply]]


def error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"message": message, "documentation_url": DOCS, **extra})


def not_found() -> Reply:
    return error(404, "Not Found")


def invalid(message: str, field_name: str | None = None, code: str = "invalid") -> Reply:
    errors = [{"resource": "Request", "field": field_name, "code": code, "message": message}]
    return error(422, message, errors=errors)


# -- representations ----------------------------------------------------------------------


def repo_json(call: Call, repo: Repository) -> dict[str, Any]:
    return {
        "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": repo.full_name,
        "private": repo.private, "owner": user_json(repo.owner), "fork": False,
        "html_url": f"https://github.com/{repo.full_name}", "url": f"{call.api_root}/repos/{repo.full_name}",
        "default_branch": repo.default_branch, "visibility": "private" if repo.private else "public",
    }


def _fork_repo_json(call: Call, full_name: str) -> dict[str, Any]:
    owner, name = full_name.split("/", 1)
    return {"id": int(hashlib.sha1(full_name.encode()).hexdigest()[:7], 16), "name": name, "full_name": full_name,
            "private": False, "owner": user_json(owner), "fork": True, "html_url": f"https://github.com/{full_name}",
            "url": f"{call.api_root}/repos/{full_name}", "default_branch": "main"}


def pr_json(call: Call, repo: Repository, pr: PullRequest) -> dict[str, Any]:
    if pr.head_repo is None:
        head_repo = None
    elif pr.head_repo == repo.full_name:
        head_repo = repo_json(call, repo)
    else:
        head_repo = _fork_repo_json(call, pr.head_repo)
    head_owner = (pr.head_repo or repo.full_name).split("/", 1)[0]
    return {
        "url": f"{call.api_root}/repos/{repo.full_name}/pulls/{pr.number}",
        "id": repo.id * 10000 + pr.number, "number": pr.number, "state": pr.state, "title": pr.title,
        "user": user_json(pr.user), "draft": pr.draft, "merged": pr.merged,
        "mergeable": pr.mergeable if pr.state == "open" else None,
        "merge_commit_sha": pr.merge_commit_sha,
        "labels": [{"id": int(hashlib.sha1(n.encode()).hexdigest()[:6], 16), "name": n, "color": "ededed"}
                   for n in pr.labels],
        "head": {"label": f"{head_owner}:{pr.head_ref}", "ref": pr.head_ref, "sha": pr.head_sha,
                 "user": user_json(head_owner), "repo": head_repo},
        "base": {"label": f"{repo.owner}:{pr.base_ref}", "ref": pr.base_ref,
                 "sha": repo.branches.get(pr.base_ref, ""), "user": user_json(repo.owner),
                 "repo": repo_json(call, repo)},
        "html_url": f"https://github.com/{repo.full_name}/pull/{pr.number}",
        "created_at": iso(pr.created_at), "updated_at": iso(pr.updated_at),
        "closed_at": iso(pr.closed_at) if pr.closed_at is not None else None,
        "merged_at": iso(pr.merged_at) if pr.merged_at is not None else None,
    }


def comment_json(call: Call, repo: Repository, comment: Comment) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for content, _, _ in comment.reactions:
        counts[content] = counts.get(content, 0) + 1
    return {
        "id": comment.id, "node_id": f"IC_{comment.id}", "body": comment.body,
        "user": user_json(comment.user, bot=comment.user.endswith("[bot]")),
        "created_at": iso(comment.created_at), "updated_at": iso(comment.updated_at),
        "url": f"{call.api_root}/repos/{repo.full_name}/issues/comments/{comment.id}",
        "html_url": f"https://github.com/{repo.full_name}/pull/{comment.issue_number}#issuecomment-{comment.id}",
        "issue_url": f"{call.api_root}/repos/{repo.full_name}/issues/{comment.issue_number}",
        "author_association": "NONE" if comment.user.endswith("[bot]") else "COLLABORATOR",
        "reactions": {"total_count": len(comment.reactions), **counts},
    }


def bot_login(call: Call) -> str:
    return f"{call.sim.app_slug}[bot]"


def paginate(call: Call, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """GitHub's page/per_page slicing with absolute `Link` URLs."""
    per_page = min(100, max(1, int(call.query.get("per_page", 30))))
    page = max(1, int(call.query.get("page", 1)))
    last = max(1, (len(items) + per_page - 1) // per_page)
    chunk = items[(page - 1) * per_page: page * per_page]
    links = []

    def url(n: int) -> str:
        query = MultiDict(call.query)
        query["page"] = str(n)
        query["per_page"] = str(per_page)
        return f"{call.server_root}{call.path}?{urlencode(list(query.items()))}"

    if page < last:
        links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
    if page > 1:
        links += [f'<{url(1)}>; rel="first"', f'<{url(page - 1)}>; rel="prev"']
    return chunk, ({"link": ", ".join(links)} if links else {})


def _installation_json(call: Call, inst) -> dict[str, Any]:
    return {
        "id": inst.id, "account": user_json(inst.account), "app_id": call.sim.app_id,
        "app_slug": call.sim.app_slug, "target_type": "Organization", "permissions": inst.permissions,
        "repository_selection": inst.repository_selection, "events": ["check_run", "issue_comment", "pull_request"],
        "created_at": iso(0), "updated_at": iso(0), "suspended_at": None,
        "access_tokens_url": f"{call.api_root}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{call.api_root}/installation/repositories",
        "html_url": f"https://github.com/settings/installations/{inst.id}", "target_id": 1,
        "single_file_name": None,
    }


# -- App (JWT) ------------------------------------------------------------------------------


async def get_app(call: Call) -> Reply:
    return Reply(200, {"id": call.sim.app_id, "slug": call.sim.app_slug, "name": "Flareship",
                       "owner": user_json("acme"), "permissions": dict(sorted(_union_permissions(call.sim).items())),
                       "events": ["check_run", "issue_comment", "pull_request"],
                       "created_at": iso(0), "updated_at": iso(0), "html_url": "https://github.com/apps/flareship",
                       "node_id": "A_1", "external_url": "https://example.com", "description": None})


def _union_permissions(sim: GitHubSim) -> dict[str, str]:
    perms: dict[str, str] = {}
    for inst in sim.installations.values():
        for key, level in inst.permissions.items():
            if LEVELS.get(level, 0) > LEVELS.get(perms.get(key, ""), 0):
                perms[key] = level
    return perms


async def get_installation(call: Call) -> Reply:
    inst = call.sim.installations.get(int(call.params["installation_id"]))
    if inst is None:
        return not_found()
    return Reply(200, _installation_json(call, inst))


async def create_access_token(call: Call) -> Reply:
    sim = call.sim
    inst = sim.installations.get(int(call.params["installation_id"]))
    if inst is None:
        return not_found()
    if inst.suspended:
        return error(403, "This installation has been suspended")
    body = call.body or {}
    permissions = dict(inst.permissions)
    if body.get("permissions"):
        for key, level in body["permissions"].items():
            if LEVELS.get(level, 0) > LEVELS.get(inst.permissions.get(key, ""), 0):
                return invalid("The permissions requested are not granted to this installation.", "permissions")
        permissions = dict(body["permissions"])
        permissions.setdefault("metadata", "read")
    repositories: set[str] | None = None
    wanted = [f"{inst.account}/{name}" for name in body.get("repositories") or []]
    by_id = {r.id: r.full_name for r in sim.repos.values()}
    for rid in body.get("repository_ids") or []:
        wanted.append(by_id.get(rid, f"#{rid}"))
    if wanted:
        for full_name in wanted:
            if full_name not in sim.repos or not inst.covers(full_name):
                return invalid("There is at least one repository that does not exist or is not accessible "
                               "to the parent installation.", "repositories")
        repositories = set(wanted)
    token = sim.issue_token(inst, permissions, repositories)
    reply: dict[str, Any] = {"token": token.token, "expires_at": iso(token.expires_at),
                             "permissions": permissions,
                             "repository_selection": "selected" if repositories else inst.repository_selection}
    if repositories:
        reply["repositories"] = [repo_json(call, sim.repos[name]) for name in sorted(repositories)]
    return Reply(201, reply)


async def get_repo_installation(call: Call) -> Reply:
    full_name = f"{call.params['owner']}/{call.params['repo']}"
    if full_name not in call.sim.repos:
        return not_found()
    for inst in call.sim.installations.values():
        if inst.covers(full_name):
            return Reply(200, _installation_json(call, inst))
    return not_found()


async def get_rate_limit(call: Call) -> Reply:
    bucket = f"installation:{call.token.installation_id}" if call.token else "app"
    remaining, used, reset = call.sim.rate_state(bucket)
    core = {"limit": call.sim.rate_limit, "remaining": remaining, "used": used, "reset": reset, "resource": "core"}
    return Reply(200, {"resources": {"core": core}, "rate": core})


# -- repository -----------------------------------------------------------------------------


async def get_repo(call: Call) -> Reply:
    return Reply(200, repo_json(call, call.repo))


async def get_collaborator_permission(call: Call) -> Reply:
    login = call.params["username"]
    found = call.repo.collaborators.get(login)
    if found is None:
        return error(404, f"{login} is not a user")
    role_name, legacy = found
    return Reply(200, {"permission": legacy, "role_name": role_name,
                       "user": {**user_json(login), "role_name": role_name,
                                "permissions": {"admin": legacy == "admin",
                                                "maintain": role_name in ("admin", "maintain"),
                                                "push": legacy in ("admin", "write"),
                                                "triage": legacy in ("admin", "write") or role_name == "triage",
                                                "pull": True}}})


def _blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


async def get_content(call: Call) -> Reply:
    repo = call.repo
    ref = call.query.get("ref") or repo.default_branch
    sha = repo.resolve(ref)
    if sha is None:
        return error(404, f"No commit found for the ref {ref}")
    files = repo.files.get(sha, {})
    path = call.params["path"].strip("/")
    if path in files:
        content = files[path]
        if "raw" in call.accept:
            return Reply(200, content, content_type="application/vnd.github.raw")
        item = {"type": "file", "name": path.rsplit("/", 1)[-1], "path": path, "sha": _blob_sha(content),
                "size": len(content), "url": f"{call.api_root}/repos/{repo.full_name}/contents/{path}?ref={ref}",
                "html_url": f"https://github.com/{repo.full_name}/blob/{ref}/{path}", "git_url": None,
                "download_url": None, "_links": {}}
        if len(content) > 1024 * 1024:
            item.update(encoding="none", content="")
        else:
            encoded = base64.b64encode(content).decode()
            item.update(encoding="base64",
                        content="\n".join(encoded[i:i + 60] for i in range(0, len(encoded), 60)) + "\n")
        return Reply(200, item)
    prefix = path + "/" if path else ""
    entries: dict[str, dict[str, Any]] = {}
    for name in sorted(files):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            first = rest.split("/", 1)[0]
            is_dir = "/" in rest
            entries.setdefault(first, {"type": "dir" if is_dir else "file", "name": first,
                                       "path": prefix + first, "size": 0 if is_dir else len(files[name]),
                                       "sha": _blob_sha(files[name]) if not is_dir else "0" * 40})
    if entries:
        return Reply(200, list(entries.values()))
    return not_found()


def build_tarball(repo: Repository, sha: str) -> bytes:
    """What codeload serves: a gzipped tar with one top folder `{owner}-{repo}-{sha7}/`."""
    top = f"{repo.owner}-{repo.name}-{sha[:7]}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": sha}) as tar:
        directories = set()
        for path in sorted([*repo.files.get(sha, {}), *repo.symlinks.get(sha, {})]):
            parts = path.split("/")[:-1]
            for i in range(len(parts)):
                directories.add("/".join(parts[: i + 1]))
        info = tarfile.TarInfo(top + "/")
        info.type = tarfile.DIRTYPE
        info.mode = 0o775
        tar.addfile(info)
        for directory in sorted(directories):
            info = tarfile.TarInfo(f"{top}/{directory}/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o775
            tar.addfile(info)
        for path, content in sorted(repo.files.get(sha, {}).items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size = len(content)
            info.mode = 0o664
            tar.addfile(info, io.BytesIO(content))
        for path, target in sorted(repo.symlinks.get(sha, {}).items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mode = 0o777
            tar.addfile(info)
    return buffer.getvalue()


async def get_tarball(call: Call) -> Reply:
    repo = call.repo
    sha = repo.resolve(call.params["ref"])
    if sha is None:
        return not_found()
    ticket = call.sim.codeload_ticket(repo.full_name, sha)
    location = f"{call.server_root}/_codeload/{repo.full_name}/legacy.tar.gz/{sha}?token={ticket}"
    return Reply(302, b"", headers={"location": location}, content_type="text/html;charset=utf-8")


async def compare(call: Call) -> Reply:
    repo = call.repo
    basehead = call.params["basehead"]
    if "..." not in basehead:
        return not_found()
    base_ref, head_ref = basehead.split("...", 1)
    base, head = repo.resolve(base_ref), repo.resolve(head_ref)
    if base is None or head is None:
        return not_found()
    head_chain, base_chain = repo.ancestors(head), repo.ancestors(base)
    if base == head:
        status, ahead, behind = "identical", 0, 0
    elif base in head_chain:
        status, ahead, behind = "ahead", head_chain.index(base), 0
    elif head in base_chain:
        status, ahead, behind = "behind", 0, base_chain.index(head)
    else:
        common = next((sha for sha in head_chain if sha in base_chain), None)
        status = "diverged"
        ahead = head_chain.index(common) if common else len(head_chain)
        behind = base_chain.index(common) if common else len(base_chain)
    commits = [{"sha": sha, "commit": {"message": f"commit {sha[:7]}"}} for sha in reversed(head_chain[:ahead])]
    base_files, head_files = repo.files.get(base, {}), repo.files.get(head, {})
    changed = sorted(p for p in set(base_files) | set(head_files) if base_files.get(p) != head_files.get(p))
    files = [{"filename": p, "status": "added" if p not in base_files else "removed" if p not in head_files
              else "modified"} for p in changed]
    return Reply(200, {"status": status, "ahead_by": ahead, "behind_by": behind, "total_commits": ahead,
                       "commits": commits, "files": files, "merge_base_commit": {"sha": base},
                       "base_commit": {"sha": base}, "url": f"{call.api_root}/repos/{repo.full_name}/compare/{basehead}",
                       "html_url": f"https://github.com/{repo.full_name}/compare/{basehead}"})


async def list_environments(call: Call) -> Reply:
    envs = [{"id": i + 1, "name": n, "url": f"{call.api_root}/repos/{call.repo.full_name}/environments/{n}",
             "html_url": f"https://github.com/{call.repo.full_name}/deployments/activity_log?environments_filter={n}",
             "created_at": iso(0), "updated_at": iso(0), "protection_rules": []}
            for i, n in enumerate(call.repo.environments)]
    return Reply(200, {"total_count": len(envs), "environments": envs})


async def list_artifacts(call: Call) -> Reply:
    return Reply(200, {"total_count": 0, "artifacts": []})


async def download_artifact(call: Call) -> Reply:
    return error(410, "Artifact has expired")


# -- pull requests, issues, comments -------------------------------------------------------


async def get_pull(call: Call) -> Reply:
    pr = call.repo.pulls.get(int(call.params["pull_number"]))
    if pr is None:
        return not_found()
    return Reply(200, pr_json(call, call.repo, pr))


async def list_pulls(call: Call) -> Reply:
    """GET /pulls: `state` (open, closed, all; default open), `head` (`owner:ref`), `base`, newest first
    (`sort=created`, `direction=desc`, GitHub's defaults; other sorts are not modelled)."""
    repo, query = call.repo, call.query
    state = query.get("state", "open")
    pulls = [p for p in repo.pulls.values() if state == "all" or p.state == state]
    if query.get("head"):
        owner, _, ref = query["head"].partition(":")
        pulls = [p for p in pulls if p.head_ref == ref and (p.head_repo or repo.full_name).split("/", 1)[0] == owner]
    if query.get("base"):
        pulls = [p for p in pulls if p.base_ref == query["base"]]
    pulls.sort(key=lambda p: (p.created_at, p.number), reverse=query.get("direction", "desc") != "asc")
    items, headers = paginate(call, [pr_json(call, repo, p) for p in pulls])
    return Reply(200, items, headers)


async def list_reviews(call: Call) -> Reply:
    number = int(call.params["pull_number"])
    if number not in call.repo.pulls:
        return not_found()
    items, headers = paginate(call, call.repo.reviews.get(number, []))
    return Reply(200, items, headers)


def _issue_exists(repo: Repository, number: int) -> bool:
    return number in repo.pulls or any(c.issue_number == number for c in repo.comments.values())


async def list_comments(call: Call) -> Reply:
    repo, number = call.repo, int(call.params["issue_number"])
    if not _issue_exists(repo, number):
        return not_found()
    comments = sorted((c for c in repo.comments.values() if c.issue_number == number), key=lambda c: c.id)
    items, headers = paginate(call, [comment_json(call, repo, c) for c in comments])
    return Reply(200, items, headers)


async def create_comment(call: Call) -> Reply:
    repo, number = call.repo, int(call.params["issue_number"])
    if not _issue_exists(repo, number):
        return not_found()
    body = call.body["body"]
    if len(body) > 65536:
        return invalid("Body is too long (maximum is 65536 characters)", "body")
    comment = call.sim.add_comment(repo.full_name, number, body, user=bot_login(call))
    data = comment_json(call, repo, comment)
    return Reply(201, data, {"location": data["url"]})


async def update_comment(call: Call) -> Reply:
    comment = call.repo.comments.get(int(call.params["comment_id"]))
    if comment is None:
        return not_found()
    comment.body = call.body["body"]
    comment.updated_at = call.sim.now()
    return Reply(200, comment_json(call, call.repo, comment))


async def create_reaction(call: Call) -> Reply:
    comment = call.repo.comments.get(int(call.params["comment_id"]))
    if comment is None:
        return not_found()
    content, user = call.body["content"], bot_login(call)
    for existing, who, rid in comment.reactions:
        if existing == content and who == user:
            return Reply(200, {"id": rid, "content": content, "user": user_json(user, bot=True),
                               "created_at": iso(comment.created_at)})
    rid = call.sim.next_id()
    comment.reactions.append((content, user, rid))
    return Reply(201, {"id": rid, "node_id": f"REA_{rid}", "content": content, "user": user_json(user, bot=True),
                       "created_at": iso(call.sim.now())})


async def remove_label(call: Call) -> Reply:
    number, name = int(call.params["issue_number"]), call.params["name"]
    pr = call.repo.pulls.get(number)
    if pr is None or name not in pr.labels:
        return error(404, "Label does not exist")
    pr.labels.remove(name)
    return Reply(200, [{"name": n, "color": "ededed"} for n in pr.labels])


# -- checks and statuses -----------------------------------------------------------------


def _check_run_problem(body: dict[str, Any], existing: dict[str, Any] | None) -> Reply | None:
    """GitHub's rules the schema does not spell out."""
    status = body.get("status", existing["status"] if existing else "queued")
    if status in ("waiting", "requested", "pending"):
        return invalid(f"Invalid status: {status} is only for GitHub Actions", "status")
    conclusion = body.get("conclusion", existing.get("conclusion") if existing else None)
    if (body.get("status") == "completed" or body.get("completed_at")) and not conclusion:
        return invalid("Conclusion is required when status is completed or completed_at is set",
                       "conclusion", "missing_field")
    if body.get("conclusion") == "stale":
        return invalid("Conclusion 'stale' can only be set by GitHub", "conclusion")
    output = body.get("output") or {}
    for key in ("summary", "text"):
        if len(output.get(key) or "") > 65535:
            return invalid(f"output.{key} is too long (maximum is 65535 characters)", f"output.{key}")
    annotations = output.get("annotations") or []
    if len(annotations) > 50:
        return invalid("Only 50 annotations may be sent per request", "output.annotations")
    for annotation in annotations:
        if len(annotation.get("message", "").encode()) > 64 * 1024 or len(annotation.get("title") or "") > 255:
            return invalid("Annotation message or title too long", "output.annotations")
    actions = body.get("actions") or []
    if len(actions) > 3:
        return invalid("Only 3 actions may be set", "actions")
    for action in actions:
        for key, limit in (("label", 20), ("description", 40), ("identifier", 20)):
            if len(action.get(key) or "") > limit:
                return invalid(f"actions.{key} is too long (maximum is {limit} characters)", f"actions.{key}")
    return None


def _check_run_json(call: Call, repo: Repository, run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "url": f"{call.api_root}/repos/{repo.full_name}/check-runs/{run['id']}",
            "html_url": f"https://github.com/{repo.full_name}/runs/{run['id']}",
            "app": {"id": call.sim.app_id, "slug": call.sim.app_slug, "name": "Flareship"},
            "check_suite": {"id": run["check_suite_id"]}, "pull_requests": []}


async def create_check_run(call: Call) -> Reply:
    repo, body = call.repo, call.body
    problem = _check_run_problem(body, None)
    if problem:
        return problem
    if repo.resolve(body["head_sha"]) != body["head_sha"]:
        return invalid("No commit found for SHA: " + body["head_sha"], "head_sha")
    run_id = call.sim.next_id()
    status = body.get("status", "queued")
    now = iso(call.sim.now())
    output = body.get("output") or {}
    run = {
        "id": run_id, "node_id": f"CR_{run_id}", "name": body["name"], "head_sha": body["head_sha"],
        "external_id": body.get("external_id", ""), "details_url": body.get("details_url"),
        "status": status, "conclusion": body.get("conclusion") if status == "completed" or body.get("completed_at")
        else None,
        "started_at": body.get("started_at", now), "completed_at": body.get("completed_at"),
        "output": {"title": output.get("title"), "summary": output.get("summary"), "text": output.get("text"),
                   "annotations_count": len(output.get("annotations") or []), "annotations_url": ""},
        "actions": body.get("actions", []), "check_suite_id": 1,
    }
    if run["conclusion"] and not run["completed_at"]:
        run["completed_at"] = now
        run["status"] = "completed"
    repo.check_runs[run_id] = run
    return Reply(201, _check_run_json(call, repo, run))


async def get_check_run(call: Call) -> Reply:
    run = call.repo.check_runs.get(int(call.params["check_run_id"]))
    if run is None:
        return not_found()
    return Reply(200, _check_run_json(call, call.repo, run))


async def update_check_run(call: Call) -> Reply:
    repo, body = call.repo, call.body
    run = repo.check_runs.get(int(call.params["check_run_id"]))
    if run is None:
        return not_found()
    problem = _check_run_problem(body, run)
    if problem:
        return problem
    for key in ("name", "details_url", "external_id", "started_at", "completed_at", "actions"):
        if key in body:
            run[key] = body[key]
    if "status" in body:
        run["status"] = body["status"]
    if "conclusion" in body:
        run["conclusion"] = body["conclusion"]
        run["status"] = "completed"
    if run["status"] == "completed" and not run.get("completed_at"):
        run["completed_at"] = iso(call.sim.now())
    if "output" in body:
        output = body["output"]
        run["output"] = {**run["output"], **{k: output[k] for k in ("title", "summary", "text") if k in output},
                         "annotations_count": run["output"].get("annotations_count", 0)
                         + len(output.get("annotations") or [])}
    return Reply(200, _check_run_json(call, repo, run))


async def list_check_runs_for_ref(call: Call) -> Reply:
    repo = call.repo
    sha = repo.resolve(call.params["ref"])
    if sha is None:
        return invalid(f"No commit found for SHA: {call.params['ref']}", "ref")
    runs = [r for r in repo.check_runs.values() if r["head_sha"] == sha]
    if call.query.get("check_name"):
        runs = [r for r in runs if r["name"] == call.query["check_name"]]
    if call.query.get("status"):
        runs = [r for r in runs if r["status"] == call.query["status"]]
    if call.query.get("filter", "latest") == "latest":
        latest: dict[str, dict[str, Any]] = {}
        for run in sorted(runs, key=lambda r: r["id"]):
            latest[run["name"]] = run
        runs = list(latest.values())
    runs.sort(key=lambda r: -r["id"])
    items, headers = paginate(call, [_check_run_json(call, repo, r) for r in runs])
    return Reply(200, {"total_count": len(runs), "check_runs": items}, headers)


async def combined_status(call: Call) -> Reply:
    repo = call.repo
    sha = repo.resolve(call.params["ref"])
    if sha is None:
        return not_found()
    latest: dict[str, dict[str, Any]] = {}
    for status in repo.statuses.get(sha, []):
        latest[status["context"]] = status
    statuses = list(latest.values())
    states = {s["state"] for s in statuses}
    if states & {"error", "failure"}:
        state = "failure"
    elif not statuses or "pending" in states:
        state = "pending"
    else:
        state = "success"
    items, headers = paginate(call, statuses)
    return Reply(200, {"state": state, "statuses": items, "sha": sha, "total_count": len(statuses),
                       "repository": repo_json(call, repo), "commit_url": "", "url": ""}, headers)


# -- deployments --------------------------------------------------------------------------


def _deployment_json(call: Call, repo: Repository, dep: dict[str, Any]) -> dict[str, Any]:
    return {**dep, "url": f"{call.api_root}/repos/{repo.full_name}/deployments/{dep['id']}",
            "statuses_url": f"{call.api_root}/repos/{repo.full_name}/deployments/{dep['id']}/statuses",
            "repository_url": f"{call.api_root}/repos/{repo.full_name}"}


def _context_states(repo: Repository, sha: str) -> dict[str, str]:
    states: dict[str, str] = {}
    for status in repo.statuses.get(sha, []):
        states[status["context"]] = status["state"]
    for run in sorted(repo.check_runs.values(), key=lambda r: r["id"]):
        if run["head_sha"] == sha:
            states[run["name"]] = run["conclusion"] or run["status"]
    return states


async def create_deployment(call: Call) -> Reply:
    repo, body, sim = call.repo, call.body, call.sim
    ref = body["ref"]
    sha = repo.resolve(ref)
    if sha is None:
        return invalid(f"No ref found for: {ref}", "ref")
    branch = ref.removeprefix("refs/heads/")
    if body.get("auto_merge", True) and branch in repo.branches and branch != repo.default_branch:
        if branch in repo.merge_conflicts:
            return error(409, f"Conflict merging {repo.default_branch} into {branch}.")
        if branch in repo.behind_default:
            repo.behind_default.discard(branch)
            return Reply(202, {"message": f"Auto-merged {repo.default_branch} into {branch} on deployment."})
    states = _context_states(repo, sha)
    required = body.get("required_contexts")
    needed = list(states) if required is None else list(required)
    failing = [c for c in needed if states.get(c) != "success"]
    if failing:
        return error(409, f"Conflict: Commit status checks failed for {ref}.",
                     errors=[{"contexts": [{"context": c, "state": states.get(c, "missing")} for c in failing],
                              "resource": "Deployment", "field": "required_contexts", "code": "invalid"}])
    payload = body.get("payload", {})
    if isinstance(payload, str):
        try:
            payload = json.loads(payload) if payload else {}
        except ValueError:
            return invalid("payload is not valid JSON", "payload")
    environment = body.get("environment", "production")
    dep_id = sim.next_id()
    now = iso(sim.now())
    dep = {"id": dep_id, "node_id": f"DE_{dep_id}", "sha": sha, "ref": ref, "task": body.get("task", "deploy"),
           "payload": payload, "original_environment": environment, "environment": environment,
           "description": body.get("description"), "creator": user_json(bot_login(call), bot=True),
           "created_at": now, "updated_at": now,
           "transient_environment": body.get("transient_environment", False),
           "production_environment": body.get("production_environment", environment == "production"),
           "performed_via_github_app": {"id": sim.app_id, "slug": sim.app_slug}}
    repo.deployments[dep_id] = dep
    repo.deployment_statuses[dep_id] = []
    if environment not in repo.environments:
        repo.environments.append(environment)
    return Reply(201, _deployment_json(call, repo, dep))


async def list_deployments(call: Call) -> Reply:
    repo = call.repo
    deps = sorted(repo.deployments.values(), key=lambda d: -d["id"])
    for key in ("sha", "ref", "task", "environment"):
        if call.query.get(key):
            deps = [d for d in deps if d[key] == call.query[key]]
    items, headers = paginate(call, [_deployment_json(call, repo, d) for d in deps])
    return Reply(200, items, headers)


async def create_deployment_status(call: Call) -> Reply:
    repo, body, sim = call.repo, call.body, call.sim
    dep_id = int(call.params["deployment_id"])
    dep = repo.deployments.get(dep_id)
    if dep is None:
        return not_found()
    if len(body.get("description") or "") > 140:
        return invalid("description is too long (maximum is 140 characters)", "description")
    state = body["state"]
    if body.get("environment"):
        dep["environment"] = body["environment"]
    status_id = sim.next_id()
    now = iso(sim.now())
    log_url = body.get("log_url") or body.get("target_url") or ""
    status = {"id": status_id, "node_id": f"DES_{status_id}", "state": state,
              "description": body.get("description", ""), "environment": dep["environment"],
              "target_url": log_url, "log_url": log_url, "environment_url": body.get("environment_url", ""),
              "creator": user_json(bot_login(call), bot=True), "created_at": now, "updated_at": now,
              "deployment_url": f"{call.api_root}/repos/{repo.full_name}/deployments/{dep_id}",
              "repository_url": f"{call.api_root}/repos/{repo.full_name}"}
    repo.deployment_statuses[dep_id].append(status)
    dep["updated_at"] = now
    if state == "success" and body.get("auto_inactive", True):
        for other_id, other in repo.deployments.items():
            if other_id == dep_id or other["environment"] != dep["environment"]:
                continue
            if other["transient_environment"] or other["production_environment"]:
                continue
            history = repo.deployment_statuses.get(other_id) or []
            if history and history[-1]["state"] == "success":
                history.append({**history[-1], "id": sim.next_id(), "state": "inactive", "created_at": now,
                                "updated_at": now, "description": "auto-inactivated"})
    return Reply(201, status)


async def get_deployment(call: Call) -> Reply:
    dep = call.repo.deployments.get(int(call.params["deployment_id"]))
    if dep is None:
        return not_found()
    return Reply(200, _deployment_json(call, call.repo, dep))


async def delete_deployment(call: Call) -> Reply:
    """GitHub deletes only an inactive deployment, unless it is the repository's only one."""
    repo = call.repo
    dep_id = int(call.params["deployment_id"])
    if dep_id not in repo.deployments:
        return not_found()
    history = repo.deployment_statuses.get(dep_id) or []
    if len(repo.deployments) > 1 and (not history or history[-1]["state"] != "inactive"):
        return invalid("We cannot delete an active deployment unless it is the only deployment in a given"
                       " environment.", "deployment")
    del repo.deployments[dep_id]
    repo.deployment_statuses.pop(dep_id, None)
    return Reply(204, None)


async def list_deployment_statuses(call: Call) -> Reply:
    dep_id = int(call.params["deployment_id"])
    if dep_id not in call.repo.deployments:
        return not_found()
    items, headers = paginate(call, list(reversed(call.repo.deployment_statuses.get(dep_id, []))))
    return Reply(200, items, headers)


# -- routing table ---------------------------------------------------------------------------

#: (method, template) -> (handler, auth, permission alternatives (name, level)).
#: auth: "jwt" = App JWT only; "token" = installation token; "any" = either or none.
R = "/repos/{owner}/{repo}"
ROUTES: dict[tuple[str, str], tuple[Handler, str, tuple[tuple[str, str], ...]]] = {
    ("GET", "/app"): (get_app, "jwt", ()),
    ("GET", "/app/installations/{installation_id}"): (get_installation, "jwt", ()),
    ("POST", "/app/installations/{installation_id}/access_tokens"): (create_access_token, "jwt", ()),
    ("GET", R + "/installation"): (get_repo_installation, "jwt", ()),
    ("GET", "/rate_limit"): (get_rate_limit, "any", ()),
    ("GET", R): (get_repo, "token", (("metadata", "read"),)),
    ("GET", R + "/collaborators/{username}/permission"): (get_collaborator_permission, "token",
                                                          (("metadata", "read"),)),
    ("GET", R + "/contents/{path}"): (get_content, "token", (("contents", "read"),)),
    ("GET", R + "/tarball/{ref}"): (get_tarball, "token", (("contents", "read"),)),
    ("GET", R + "/compare/{basehead}"): (compare, "token", (("contents", "read"),)),
    ("GET", R + "/environments"): (list_environments, "token", (("actions", "read"), ("deployments", "read"))),
    ("GET", R + "/actions/artifacts"): (list_artifacts, "token", (("actions", "read"),)),
    ("GET", R + "/actions/artifacts/{artifact_id}/{archive_format}"): (download_artifact, "token",
                                                                        (("actions", "read"),)),
    ("GET", R + "/pulls"): (list_pulls, "token", (("pull_requests", "read"),)),
    ("GET", R + "/pulls/{pull_number}"): (get_pull, "token", (("pull_requests", "read"),)),
    ("GET", R + "/pulls/{pull_number}/reviews"): (list_reviews, "token", (("pull_requests", "read"),)),
    ("GET", R + "/issues/{issue_number}/comments"): (list_comments, "token",
                                                     (("issues", "read"), ("pull_requests", "read"))),
    ("POST", R + "/issues/{issue_number}/comments"): (create_comment, "token",
                                                      (("issues", "write"), ("pull_requests", "write"))),
    ("PATCH", R + "/issues/comments/{comment_id}"): (update_comment, "token",
                                                     (("issues", "write"), ("pull_requests", "write"))),
    ("POST", R + "/issues/comments/{comment_id}/reactions"): (create_reaction, "token",
                                                              (("issues", "write"), ("pull_requests", "write"))),
    ("DELETE", R + "/issues/{issue_number}/labels/{name}"): (remove_label, "token",
                                                             (("issues", "write"), ("pull_requests", "write"))),
    ("POST", R + "/check-runs"): (create_check_run, "token", (("checks", "write"),)),
    ("GET", R + "/check-runs/{check_run_id}"): (get_check_run, "token", (("checks", "read"),)),
    ("PATCH", R + "/check-runs/{check_run_id}"): (update_check_run, "token", (("checks", "write"),)),
    ("GET", R + "/commits/{ref}/check-runs"): (list_check_runs_for_ref, "token", (("checks", "read"),)),
    ("GET", R + "/commits/{ref}/status"): (combined_status, "token", (("statuses", "read"),)),
    ("GET", R + "/deployments"): (list_deployments, "token", (("deployments", "read"),)),
    ("POST", R + "/deployments"): (create_deployment, "token", (("deployments", "write"),)),
    ("GET", R + "/deployments/{deployment_id}"): (get_deployment, "token", (("deployments", "read"),)),
    ("DELETE", R + "/deployments/{deployment_id}"): (delete_deployment, "token", (("deployments", "write"),)),
    ("GET", R + "/deployments/{deployment_id}/statuses"): (list_deployment_statuses, "token",
                                                           (("deployments", "read"),)),
    ("POST", R + "/deployments/{deployment_id}/statuses"): (create_deployment_status, "token",
                                                            (("deployments", "write"),)),
}
