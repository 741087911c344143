"""What the simulated GitHub knows: the App, installations and tokens, repositories and their PRs.

Plain data and small pure helpers; the HTTP side (`bot.sim.github.server`) reads and changes it.
Tests and the demo arrange a scenario by calling the `add_*`/`set_*` methods directly.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

#: What Flareship's app.yml asks for; the default grant of a simulated installation.
DEFAULT_PERMISSIONS = {
    "actions": "read",
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "read",
    "statuses": "read",
}
#: Legacy `permission` field of the collaborator-permission API for each role.
LEGACY_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
TOKEN_TTL = 3600
RATE_LIMIT = 5000
LEVELS = {"read": 1, "write": 2, "admin": 3}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Installation:
    id: int
    account: str
    permissions: dict[str, str]
    #: Full names of the repositories granted, or None for "all" of the account's repositories.
    repositories: set[str] | None = None
    suspended: bool = False

    @property
    def repository_selection(self) -> str:
        return "all" if self.repositories is None else "selected"

    def covers(self, repository: str) -> bool:
        if self.repositories is None:
            return repository.split("/", 1)[0].lower() == self.account.lower()
        return repository in self.repositories


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: set[str] | None


@dataclass
class PullRequest:
    number: int
    head_sha: str
    head_ref: str
    base_ref: str
    head_repo: str | None  # None: the fork was deleted
    user: str = "octocat"
    title: str = "A change"
    state: str = "open"
    merged: bool = False
    merge_commit_sha: str | None = None
    draft: bool = False
    labels: list[str] = field(default_factory=list)
    mergeable: bool | None = True
    created_at: float = 0.0
    updated_at: float = 0.0
    closed_at: float | None = None
    merged_at: float | None = None


@dataclass
class Comment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: float
    updated_at: float
    reactions: list[tuple[str, str, int]] = field(default_factory=list)  # (content, user, id)


@dataclass
class Repository:
    full_name: str
    id: int
    default_branch: str = "main"
    private: bool = False
    #: branch name -> head sha
    branches: dict[str, str] = field(default_factory=dict)
    #: sha -> {path: bytes}
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    #: sha -> {path: link target}: symbolic links, served in the tarball only
    symlinks: dict[str, dict[str, str]] = field(default_factory=dict)
    #: sha -> parent sha (for compare)
    parents: dict[str, str | None] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    #: login -> (role_name, legacy permission)
    collaborators: dict[str, tuple[str, str]] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: sha -> list of commit statuses {context, state, ...}
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    deployment_statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: pull number -> reviews
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    environments: list[str] = field(default_factory=list)
    #: Branches the default branch would be merged into by a deployment's auto_merge.
    behind_default: set[str] = field(default_factory=set)
    #: Branches whose auto-merge would conflict.
    merge_conflicts: set[str] = field(default_factory=set)

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    def resolve(self, ref: str) -> str | None:
        """A branch, `refs/heads/...` or a known SHA (or a unique 7+ char prefix) -> full SHA."""
        for prefix in ("refs/heads/", "heads/"):
            if ref.startswith(prefix):
                ref = ref[len(prefix):]
        if ref in self.branches:
            return self.branches[ref]
        known = set(self.files) | set(self.parents) | set(self.branches.values())
        if ref in known:
            return ref
        if len(ref) >= 7:
            found = [sha for sha in known if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        return None

    def ancestors(self, sha: str) -> list[str]:
        chain, seen = [], set()
        current: str | None = sha
        while current is not None and current not in seen:
            seen.add(current)
            chain.append(current)
            current = self.parents.get(current)
        return chain


@dataclass
class Fault:
    """An injected failure: matching requests get `status` (after `delay`), `times` times.

    `times=None` (or negative) never runs out; `status=None` with a `delay` is a slow answer.
    """

    method: str
    path_glob: str
    status: int | None = None
    retry_after: float | None = None
    times: int | None = 1
    delay: float = 0.0
    ratelimit_remaining: int | None = None
    ratelimit_reset_in: float | None = None
    message: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times >= 0 and self.hits >= self.times:
            return False
        return (self.method in ("*", method.upper())) and fnmatch.fnmatchcase(path, self.path_glob)


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    auth: str  # "jwt", "token", "none", "invalid", "codeload"
    body: Any
    installation_id: int | None
    template: str | None
    headers: dict[str, str]
    time: float


def generate_private_key() -> str:
    """A new RSA key pair for the simulated App, as GitHub generates one (PEM, PKCS#1)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@functools.lru_cache(maxsize=8)
def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class GitHubSim:
    """The simulated GitHub's state (see module docstring)."""

    def __init__(self, *, app_id: int = 1, app_slug: str = "flareship", clock: Callable[[], float] = time.time,
                 private_key: str | None = None):
        """`private_key` (PEM) lets a test session reuse one key; by default a fresh pair is generated."""
        self.app_id = app_id
        self.app_slug = app_slug
        self.clock = clock
        self.app_private_key = private_key or generate_private_key()
        self.app_public_key = public_key_pem(self.app_private_key)
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.repos: dict[str, Repository] = {}
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.token_ttl = TOKEN_TTL
        self.rate_limit = RATE_LIMIT
        self._rate_used: dict[str, int] = {}
        self._rate_window_start = clock()
        self._codeload: dict[str, tuple[str, str, float]] = {}
        self._next_id = 1000

    # -- ids and clock -------------------------------------------------------------------

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def now(self) -> float:
        return self.clock()

    # -- arranging a scenario -------------------------------------------------------------

    def add_installation(self, installation_id: int | None = None, *, account: str = "acme",
                         repositories: list[str] | None = None,
                         permissions: dict[str, str] | None = None) -> Installation:
        iid = installation_id or self.next_id()
        inst = Installation(iid, account, dict(permissions or DEFAULT_PERMISSIONS),
                            set(repositories) if repositories is not None else None)
        self.installations[iid] = inst
        return inst

    def add_repo(self, full_name: str, *, default_branch: str = "main", private: bool = False,
                 installation_id: int | None = None, head_sha: str | None = None) -> Repository:
        """A repository; with `installation_id`, that installation is created or widened to cover it."""
        repo = self.repos.get(full_name)
        if repo is None:
            repo = self.repos[full_name] = Repository(full_name, self.next_id(), default_branch, private)
        sha = head_sha or hashlib.sha1(f"{full_name}@{default_branch}".encode()).hexdigest()
        repo.branches.setdefault(default_branch, sha)
        repo.parents.setdefault(repo.branches[default_branch], None)
        repo.files.setdefault(repo.branches[default_branch], {})
        if installation_id is not None:
            inst = self.installations.get(installation_id)
            if inst is None:
                self.add_installation(installation_id, account=repo.owner, repositories=[full_name])
            elif inst.repositories is not None:
                inst.repositories.add(full_name)
        return repo

    def repo(self, full_name: str) -> Repository:
        return self.repos[full_name]

    def add_commit(self, repo: str, sha: str, *, parent: str | None = None, branch: str | None = None,
                   files: dict[str, bytes | str] | None = None) -> str:
        """A commit (files copied from the parent, then `files` applied); moves `branch` to it."""
        r = self.repos[repo]
        r.parents[sha] = parent
        base = dict(r.files.get(parent, {})) if parent else {}
        for path, content in (files or {}).items():
            base[path.strip("/")] = content.encode() if isinstance(content, str) else content
        r.files[sha] = base
        if branch:
            r.branches[branch] = sha
        return sha

    def set_file(self, repo: str, sha: str, path: str, content: bytes | str) -> None:
        r = self.repos[repo]
        r.parents.setdefault(sha, None)
        r.files.setdefault(sha, {})[path.strip("/")] = content.encode() if isinstance(content, str) else content

    def set_symlink(self, repo: str, sha: str, path: str, target: str) -> None:
        """A symbolic link at `path` in the commit's tree (git stores its target as written)."""
        r = self.repos[repo]
        r.parents.setdefault(sha, None)
        r.files.setdefault(sha, {})
        r.symlinks.setdefault(sha, {})[path.strip("/")] = target

    def set_branch(self, repo: str, branch: str, sha: str) -> None:
        r = self.repos[repo]
        r.branches[branch] = sha
        r.parents.setdefault(sha, None)
        r.files.setdefault(sha, {})

    def add_pull_request(self, repo: str, number: int, *, head_sha: str, head_ref: str = "feature",
                         base_ref: str | None = None, fork: bool = False, head_repo: str | None = "",
                         user: str = "octocat", merged: bool = False, merge_commit_sha: str | None = None,
                         draft: bool = False, labels: list[str] | None = None, state: str | None = None,
                         title: str = "A change", mergeable: bool | None = True) -> PullRequest:
        """A pull request; `fork=True` puts the head in `user`'s fork, `head_repo=None` a deleted one,
        `mergeable=None` means GitHub is still computing it."""
        r = self.repos[repo]
        if head_repo == "":
            head_repo = f"{user}/{r.name}" if fork else repo
        r.parents.setdefault(head_sha, r.branches.get(r.default_branch))
        if head_sha not in r.files:
            r.files[head_sha] = dict(r.files.get(r.branches.get(r.default_branch, ""), {}))
        if not fork:
            r.branches.setdefault(head_ref, head_sha)
        now = self.now()
        pr = PullRequest(number, head_sha, head_ref, base_ref or r.default_branch, head_repo, user, title,
                         state or ("closed" if merged else "open"), merged, merge_commit_sha, draft,
                         list(labels or []), mergeable, created_at=now, updated_at=now)
        if pr.state == "closed":
            pr.closed_at = now
            pr.merged_at = now if merged else None
        r.pulls[number] = pr
        return pr

    def push_to_pull_request(self, repo: str, number: int, sha: str | None = None, *,
                             files: dict[str, bytes | str] | None = None) -> tuple[str, str]:
        """A new commit on the PR's head branch (files of the old head, then `files`): GitHub's
        `pull_request.synchronize`. Returns (before, after) head SHAs."""
        r = self.repos[repo]
        pr = r.pulls[number]
        if pr.state != "open":
            raise ValueError(f"pull request #{number} is {pr.state}; push to an open one")
        before = pr.head_sha
        after = sha or hashlib.sha1(f"{repo}#{number}@{before}+{self.next_id()}".encode()).hexdigest()
        self.add_commit(repo, after, parent=before, files=files)
        if pr.head_repo == repo:
            r.branches[pr.head_ref] = after
        pr.head_sha = after
        pr.updated_at = self.now()
        return before, after

    def close_pull_request(self, repo: str, number: int, *, merged: bool = False,
                           merge_commit_sha: str | None = None) -> PullRequest:
        """Close the PR (merged: its head lands on the base branch as `merge_commit_sha`)."""
        r = self.repos[repo]
        pr = r.pulls[number]
        now = self.now()
        pr.state, pr.closed_at, pr.updated_at, pr.mergeable = "closed", now, now, None
        if merged:
            pr.merged, pr.merged_at = True, now
            pr.merge_commit_sha = merge_commit_sha or hashlib.sha1(f"merge {repo}#{number}".encode()).hexdigest()
            self.add_commit(repo, pr.merge_commit_sha, parent=pr.head_sha, branch=pr.base_ref)
        return pr

    def reopen_pull_request(self, repo: str, number: int) -> PullRequest:
        """Reopen a closed, unmerged PR (GitHub refuses to reopen a merged one)."""
        pr = self.repos[repo].pulls[number]
        if pr.merged:
            raise ValueError(f"pull request #{number} is merged and cannot be reopened")
        pr.state, pr.closed_at, pr.updated_at, pr.mergeable = "open", None, self.now(), True
        return pr

    def author_association(self, repo: str, login: str) -> str:
        """GitHub's `author_association` of `login` on `repo` (OWNER, COLLABORATOR or CONTRIBUTOR)."""
        r = self.repos[repo]
        if login == r.owner:
            return "OWNER"
        if login in r.collaborators:
            return "COLLABORATOR"
        return "CONTRIBUTOR"

    def add_collaborator(self, repo: str, login: str, role_name: str = "write", *, base_role: str | None = None) -> None:
        """A collaborator; a custom `role_name` maps to the legacy permission of its `base_role`."""
        legacy = LEGACY_PERMISSION.get(role_name) or LEGACY_PERMISSION.get(base_role or "read", "read")
        self.repos[repo].collaborators[login] = (role_name, legacy)

    def add_review(self, repo: str, number: int, *, user: str, state: str = "APPROVED",
                   commit_id: str | None = None) -> dict[str, Any]:
        r = self.repos[repo]
        review = {"id": self.next_id(), "user": _user(user), "state": state, "body": "",
                  "commit_id": commit_id or r.pulls[number].head_sha, "submitted_at": iso(self.now()),
                  "author_association": "COLLABORATOR"}
        r.reviews.setdefault(number, []).append(review)
        return review

    def add_status(self, repo: str, sha: str, *, context: str, state: str = "success") -> dict[str, Any]:
        status = {"id": self.next_id(), "context": context, "state": state, "description": None,
                  "target_url": None, "created_at": iso(self.now()), "updated_at": iso(self.now())}
        self.repos[repo].statuses.setdefault(sha, []).append(status)
        return status

    def add_comment(self, repo: str, issue_number: int, body: str, *, user: str = "octocat") -> Comment:
        now = self.now()
        comment = Comment(self.next_id(), issue_number, body, user, now, now)
        self.repos[repo].comments[comment.id] = comment
        return comment

    def add_environment(self, repo: str, name: str) -> None:
        envs = self.repos[repo].environments
        if name not in envs:
            envs.append(name)

    # -- faults ---------------------------------------------------------------------------

    def inject_fault(self, method: str, path_glob: str, status: int | None = None, *,
                     retry_after: float | None = None, times: int | None = 1, delay: float = 0.0,
                     ratelimit_remaining: int | None = None, ratelimit_reset_in: float | None = None,
                     message: str | None = None) -> Fault:
        """Make matching requests fail (or be slow). `path_glob` is matched without any GHES prefix."""
        fault = Fault(method.upper(), path_glob, status, retry_after, times, delay,
                      ratelimit_remaining, ratelimit_reset_in, message)
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.hits += 1
                return fault
        return None

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- tokens and rate limits -----------------------------------------------------------

    def issue_token(self, installation: Installation, permissions: dict[str, str],
                    repositories: set[str] | None) -> IssuedToken:
        token = IssuedToken("ghs_" + secrets.token_urlsafe(27).replace("-", "a").replace("_", "b"),
                            installation.id, self.now() + self.token_ttl, permissions, repositories)
        self.tokens[token.token] = token
        return token

    def expire_token(self, token: str) -> None:
        if token in self.tokens:
            self.tokens[token].expires_at = self.now() - 1

    def count_request(self, bucket: str) -> tuple[int, int, int]:
        """Counts one request against `bucket`; returns (remaining, used, reset epoch)."""
        now = self.now()
        if now >= self._rate_window_start + 3600:
            self._rate_window_start = now
            self._rate_used.clear()
        used = self._rate_used.get(bucket, 0) + 1
        self._rate_used[bucket] = used
        return max(0, self.rate_limit - used), used, int(self._rate_window_start + 3600)

    def refund_request(self, bucket: str) -> None:
        """GitHub does not charge an authorised conditional request answered 304."""
        self._rate_used[bucket] = max(0, self._rate_used.get(bucket, 1) - 1)

    def rate_state(self, bucket: str) -> tuple[int, int, int]:
        used = self._rate_used.get(bucket, 0)
        return max(0, self.rate_limit - used), used, int(self._rate_window_start + 3600)

    def codeload_ticket(self, repo: str, sha: str) -> str:
        ticket = secrets.token_urlsafe(16)
        self._codeload[ticket] = (repo, sha, self.now() + 300)
        return ticket

    def redeem_codeload(self, ticket: str) -> tuple[str, str] | None:
        found = self._codeload.get(ticket)
        if found is None or found[2] < self.now():
            return None
        return found[0], found[1]

    # -- request log helpers ------------------------------------------------------------------

    def calls(self, method: str | None = None, path_glob: str | None = None, *, status: int | None = None,
              auth: str | None = None) -> list[LoggedRequest]:
        return [
            r for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_glob is None or fnmatch.fnmatchcase(r.path, path_glob))
            and (status is None or r.status == status)
            and (auth is None or r.auth == auth)
        ]

    @property
    def writes(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]


def _user(login: str, *, bot: bool = False) -> dict[str, Any]:
    return {"login": login, "id": int(hashlib.sha1(login.encode()).hexdigest()[:8], 16),
            "type": "Bot" if bot else "User", "html_url": f"https://github.com/{login}"}


user_json = _user
