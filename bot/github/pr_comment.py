"""The one Flareship comment per pull request: what it shows (pure rendering) and the writer that keeps it.

`render_comment` turns the stored state (each environment's latest deployment, the latest notice)
into markdown; `CommentWriter` merges a change into that state in `bot.store.pr_state` and edits
the comment in place, creating it once (found again by its marker after a crash). `react` adds a
reaction to the comment that carried a command.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from gidgethub import HTTPException
from gidgethub.abc import GitHubAPI

from bot.engine.model import Deployment
from bot.engine.preview_spec import display_environment, is_preview_environment
from bot.github.text import MAX_OUTPUT_CHARS, cell, iso, short_sha, split_repo, truncate
from bot.store.pr_state import PullRequestState

log = logging.getLogger(__name__)

COMMENT_MARKER = "<!-- flareship:pr-comment -->"
STATUS_WORDS = {
    "queued": "⏳ queued", "initiated": "⏳ queued", "in_progress": "🔄 deploying", "completed": "✅ live",
    "failed": "❌ failed", "rolled_back": "↩️ failed, rolled back", "cancelled": "⛔ cancelled",
    "removed": "🗑️ removed",
}
#: Where a preview deployment keeps this push's own URL (beside the stable preview URL under its environment).
DEPLOYMENT_URL_KEY = "deployment"


def comment_row(deployment: Deployment, *, details_url: str | None = None) -> dict[str, Any]:
    """What the PR comment shows for an environment's latest deployment."""
    env = deployment.environment
    url = (deployment.urls or {}).get(env) or next(iter((deployment.urls or {}).values()), None)
    when = deployment.ended_at or deployment.started_at or deployment.created_at
    return {
        "deployment_id": deployment.id,
        "kind": deployment.kind,
        "status": deployment.status,
        "dry_run": bool(deployment.options.dry_run),
        "sha": deployment.sha,
        "url": url,
        "details_url": details_url,
        "when": iso(when) if when else None,
        "by": deployment.actor,
        "error": f"{deployment.error.code}: {deployment.error.message}" if deployment.error else None,
        "deployment_url": (deployment.urls or {}).get(DEPLOYMENT_URL_KEY) if is_preview_environment(env) else None,
    }


def render_comment(state: dict[str, Any]) -> str:
    """The one Flareship comment: a table of each environment's latest deployment + the latest notice."""
    lines = [COMMENT_MARKER, "### 🚀 Flareship", ""]
    rows = state.get("environments") or {}
    if rows:
        lines += ["| Environment | Status | Commit | URL | When | By |", "|---|---|---|---|---|---|"]
        for env in sorted(rows):
            row = rows[env]
            status = STATUS_WORDS.get(row.get("status"), row.get("status") or "")
            if row.get("kind") == "rollback":
                status += " (rollback)"
            if row.get("dry_run"):
                status += " (dry run)"
            if row.get("details_url"):
                status = f"[{status}]({row['details_url']})"
            url = f"[{row['url']}]({row['url']})" if row.get("url") else ""
            if row.get("deployment_url") and row.get("status") != "removed":
                url += f" · [this push]({row['deployment_url']})"
            if row.get("status") == "removed":
                url = f"~~{row['url']}~~" if row.get("url") else ""
            by = f"@{row['by']}" if row.get("by") else ""
            lines.append(f"| **{cell(display_environment(env))}** | {status} | `{short_sha(row.get('sha'))}` | {url} | "
                         f"{cell(row.get('when'))} | {by} |")
            if row.get("error") and row.get("status") in ("failed", "rolled_back"):
                lines.append(f"| | ↳ {cell(row['error'])[:300]} | | | | |")
    else:
        lines.append("_No deployments from this pull request yet._")
    notice = state.get("notice")
    if notice:
        when = state.get("notice_at")
        lines += ["", notice + (f" <sub>({when})</sub>" if when else "")]
    lines += ["", "<sub>Comment `/help` for the commands.</sub>"]
    return truncate("\n".join(lines), MAX_OUTPUT_CHARS, keep="start")


class CommentWriter:
    """Edits the pull request's one Flareship comment in place (creating it the first time)."""

    def __init__(self, store: PullRequestState):
        self.store = store
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def update(
        self, gh: GitHubAPI, repository: str, pull_request: int, *,
        row: dict[str, Any] | None = None, environment: str | None = None,
        notice: str | None = None, clear_notice: bool = False,
    ) -> int | None:
        """Merge a row and/or a notice into the stored state and write the comment once."""
        key = (repository, pull_request)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            claimed, comment_id, state = await self.store.comment(repository, pull_request)
            state = dict(state)
            envs = dict(state.get("environments") or {})
            if row is not None and environment:
                envs[environment] = row
            state["environments"] = envs
            if notice is not None:
                state["notice"] = notice
                state["notice_at"] = iso(datetime.now(UTC))
            elif clear_notice:
                state.pop("notice", None)
                state.pop("notice_at", None)
            await self.store.save_comment(repository, pull_request, state=state)
            body = render_comment(state)
            owner, name = split_repo(repository)
            if comment_id is None and claimed:
                comment_id = await self._find(gh, owner, name, pull_request)  # recovery after a crash
            if comment_id is not None:
                try:
                    await gh.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}",
                                   {"owner": owner, "repo": name, "comment_id": comment_id}, data={"body": body})
                    return comment_id
                except HTTPException as exc:
                    if int(exc.status_code) != 404:
                        raise
                    # someone deleted the comment: write a new one
            created = await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/comments",
                                    {"owner": owner, "repo": name, "issue_number": pull_request},
                                    data={"body": body})
            await self.store.save_comment(repository, pull_request, state=state, comment_id=int(created["id"]))
            return int(created["id"])

    @staticmethod
    async def _find(gh: GitHubAPI, owner: str, name: str, pull_request: int) -> int | None:
        async for comment in gh.getiter("/repos/{owner}/{repo}/issues/{issue_number}/comments{?per_page}",
                                        {"owner": owner, "repo": name, "issue_number": pull_request,
                                         "per_page": 100}):
            if COMMENT_MARKER in (comment.get("body") or ""):
                return int(comment["id"])
        return None


async def react(gh: GitHubAPI, repository: str, comment_id: int | None, content: str) -> None:
    """Add a reaction to a comment (GitHub answers 200 when it is already there)."""
    if not comment_id:
        return
    owner, name = split_repo(repository)
    try:
        await gh.post("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
                      {"owner": owner, "repo": name, "comment_id": comment_id}, data={"content": content})
    except HTTPException as exc:  # a deleted comment must not stop the deployment's reporting
        log.warning("could not add %s reaction to comment %s: %s", content, comment_id, exc)
