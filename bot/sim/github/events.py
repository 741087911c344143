"""Webhook payloads the simulated GitHub sends, built from its own state in GitHub's shape.

What a user does on github.com (comments, labels, merges, button clicks) becomes state in the
simulator plus one of these payloads, delivered signed by `GitHubSimServer.deliver`. The field
names and nesting follow GitHub's real payloads (see tests/fixtures/github-webhooks/).
"""

from __future__ import annotations

import time
from typing import Any

from bot.sim.github.state import GitHubSim


def _iso(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts if ts is not None else time.time()))


def user(login: str, *, bot: bool = False) -> dict[str, Any]:
    uid = sum(ord(c) * 31**i for i, c in enumerate(login)) % 10**8
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "type": "Bot" if bot else "User",
        "site_admin": False,
        "html_url": f"https://github.com/{login}",
    }


def repository(sim: GitHubSim, full_name: str) -> dict[str, Any]:
    repo = sim.repo(full_name)
    owner, name = full_name.split("/", 1)
    return {
        "id": abs(hash(full_name)) % 10**9,
        "name": name,
        "full_name": full_name,
        "private": repo.private,
        "owner": user(owner),
        "html_url": f"https://github.com/{full_name}",
        "default_branch": repo.default_branch,
    }


def _envelope(sim: GitHubSim, full_name: str, sender: str, installation_id: int) -> dict[str, Any]:
    return {
        "repository": repository(sim, full_name),
        "sender": user(sender),
        "installation": {"id": installation_id, "node_id": f"MDIz{installation_id}"},
    }


def ping(sim: GitHubSim, hook_id: int = 1) -> dict[str, Any]:
    return {
        "zen": "Design for failure.",
        "hook_id": hook_id,
        "hook": {"type": "App", "id": hook_id, "app_id": sim.app_id, "active": True,
                 "events": ["check_run", "issue_comment", "pull_request"], "config": {"content_type": "json"}},
    }


def pull_request(sim: GitHubSim, full_name: str, number: int) -> dict[str, Any]:
    pr = sim.repo(full_name).pulls[number]
    repo = repository(sim, full_name)
    if pr.head_repo is None:  # the fork was deleted: GitHub sends null
        head_repo = None
    elif pr.head_repo == full_name:
        head_repo = {**repo, "fork": False}
    else:
        head_repo = {**repo, "full_name": pr.head_repo, "name": pr.head_repo.split("/", 1)[1],
                     "owner": user(pr.head_repo.split("/", 1)[0]), "fork": True}
    head_owner = (pr.head_repo or full_name).split("/", 1)[0]
    pr_id = repo["id"] * 10000 + number
    return {
        "url": f"https://api.github.com/repos/{full_name}/pulls/{number}",
        "id": pr_id,
        "node_id": f"PR_{pr_id}",
        "number": number,
        "state": pr.state,
        "locked": False,
        "title": pr.title,
        "body": None,
        "user": user(pr.user),
        "author_association": sim.author_association(full_name, pr.user),
        "draft": pr.draft,
        "merged": pr.merged,
        "merged_at": _iso(pr.merged_at) if pr.merged_at is not None else None,
        "merge_commit_sha": pr.merge_commit_sha,
        "created_at": _iso(pr.created_at or None),
        "updated_at": _iso(pr.updated_at or None),
        "closed_at": _iso(pr.closed_at) if pr.closed_at is not None else None,
        "head": {"label": f"{head_owner}:{pr.head_ref}", "ref": pr.head_ref, "sha": pr.head_sha,
                 "user": user(head_owner), "repo": head_repo},
        "base": {"label": f"{repo['owner']['login']}:{pr.base_ref}", "ref": pr.base_ref,
                 "sha": sim.repo(full_name).resolve(pr.base_ref), "user": repo["owner"], "repo": repo},
        "labels": [{"name": name} for name in pr.labels],
        "html_url": f"https://github.com/{full_name}/pull/{number}",
    }


def pull_request_event(sim: GitHubSim, full_name: str, number: int, action: str, *, sender: str,
                       installation_id: int) -> dict[str, Any]:
    """`pull_request.<action>` as GitHub delivers it (tests/fixtures/github-webhooks/pull_request.*)."""
    payload = _envelope(sim, full_name, sender, installation_id)
    payload.update({"action": action, "number": number, "pull_request": pull_request(sim, full_name, number)})
    return payload


def pull_request_opened(sim: GitHubSim, full_name: str, number: int, *, installation_id: int,
                        sender: str | None = None) -> dict[str, Any]:
    """`pull_request.opened` (the sender is the author unless given)."""
    author = sim.repo(full_name).pulls[number].user
    return pull_request_event(sim, full_name, number, "opened", sender=sender or author,
                              installation_id=installation_id)


def pull_request_reopened(sim: GitHubSim, full_name: str, number: int, *, sender: str,
                          installation_id: int) -> dict[str, Any]:
    """`pull_request.reopened` (after `GitHubSim.reopen_pull_request`)."""
    return pull_request_event(sim, full_name, number, "reopened", sender=sender, installation_id=installation_id)


def pull_request_synchronize(sim: GitHubSim, full_name: str, number: int, before: str, *, sender: str,
                             installation_id: int) -> dict[str, Any]:
    """`pull_request.synchronize`: the head moved from `before` to the PR's current head
    (`GitHubSim.push_to_pull_request` returns both); `before`/`after` sit at the top level."""
    payload = pull_request_event(sim, full_name, number, "synchronize", sender=sender,
                                 installation_id=installation_id)
    payload.update({"before": before, "after": payload["pull_request"]["head"]["sha"]})
    return payload


def issue_comment_created(sim: GitHubSim, full_name: str, number: int, comment_id: int, *,
                          installation_id: int) -> dict[str, Any]:
    """`issue_comment.created` on a pull request (the `issue.pull_request` key marks it)."""
    comment = sim.repo(full_name).comments[comment_id]
    pr = sim.repo(full_name).pulls[number]
    payload = _envelope(sim, full_name, comment.user, installation_id)
    payload.update({
        "action": "created",
        "issue": {
            "number": number,
            "title": pr.title,
            "state": pr.state,
            "user": user(pr.user),
            "pull_request": {"url": f"https://api.github.com/repos/{full_name}/pulls/{number}"},
        },
        "comment": {"id": comment_id, "body": comment.body, "user": user(comment.user),
                    "created_at": _iso(), "updated_at": _iso()},
    })
    return payload


def pull_request_labeled(sim: GitHubSim, full_name: str, number: int, label: str, *, sender: str,
                         installation_id: int) -> dict[str, Any]:
    payload = pull_request_event(sim, full_name, number, "labeled", sender=sender, installation_id=installation_id)
    payload["label"] = {"name": label}
    return payload


def pull_request_closed(sim: GitHubSim, full_name: str, number: int, *, sender: str,
                        installation_id: int) -> dict[str, Any]:
    """`pull_request.closed`, merged or not (`pull_request.merged`); `merged_by` is the sender when merged."""
    payload = pull_request_event(sim, full_name, number, "closed", sender=sender, installation_id=installation_id)
    pull = payload["pull_request"]
    pull["merged_by"] = user(sender) if pull["merged"] else None
    return payload


def check_run_requested_action(sim: GitHubSim, full_name: str, check_run_id: int, identifier: str, *,
                               sender: str, installation_id: int) -> dict[str, Any]:
    """A click on one of a check run's buttons (sent only to the App that created the run)."""
    run = sim.repo(full_name).check_runs[check_run_id]
    payload = _envelope(sim, full_name, sender, installation_id)
    payload.update({
        "action": "requested_action",
        "check_run": {
            "id": check_run_id,
            "name": run["name"],
            "head_sha": run["head_sha"],
            "external_id": run.get("external_id"),
            "status": run.get("status"),
            "conclusion": run.get("conclusion"),
            "details_url": run.get("details_url"),
            "app": {"id": sim.app_id, "slug": sim.app_slug},
            "pull_requests": [],
        },
        "requested_action": {"identifier": identifier},
    })
    return payload
