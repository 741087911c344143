"""Drive the pull-request story against a running Flareship on the simulated GitHub (for `demo`).

The simulated GitHub delivers signed webhooks to Flareship's real `POST /webhooks/github`, the
way GitHub would; this module only builds the payloads, sends them, and watches the simulator's
state (in process, so watching costs no API calls) to narrate what Flareship did:

    story = PullRequestStory(github_server, webhook_url, secret, "acme/widgets", installation_id=4242)
    comment = await story.comment(7, "/deploy staging", user="dev")
    run = await story.watch_check_run(head_sha, "staging")        # prints each step as it moves
    await story.comment(7, "/deploy production", user="reader")  # refused: 😕 + the reason
    await story.click(run["id"], "promote", user="lead")          # Promote button (permission re-checked)
    await story.comment(7, "/rollback staging", user="dev")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

REACTION_EMOJI = {"eyes": "👀", "rocket": "🚀", "confused": "😕", "+1": "👍", "-1": "👎", "heart": "❤️",
                  "hooray": "🎉", "laugh": "😄"}
COMMENT_MARKER = "flareship:pr-comment"


def _user(login: str, *, bot: bool = False) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**8, "type": "Bot" if bot else "User"}


class PullRequestStory:
    """One repository on the simulated GitHub, narrated as Flareship works on it."""

    def __init__(self, github_server: Any, webhook_url: str, secret: str, repository: str, *,
                 installation_id: int, out: Callable[[str], None] = print, poll: float = 0.05):
        self.server = github_server
        self.sim = github_server.sim
        self.webhook_url = webhook_url
        self.secret = secret
        self.repository = repository
        self.installation_id = installation_id
        self.out = out
        self.poll = poll

    # -- payloads (the fields Flareship reads, shaped like GitHub's) ---------------------

    def _base(self) -> dict[str, Any]:
        repo = self.sim.repo(self.repository)
        owner, name = self.repository.split("/", 1)
        return {"repository": {"id": repo.id, "full_name": self.repository, "name": name,
                               "owner": _user(owner), "default_branch": repo.default_branch},
                "installation": {"id": self.installation_id}}

    def comment_payload(self, number: int, body: str, comment_id: int, user: str) -> dict[str, Any]:
        return {**self._base(), "action": "created", "sender": _user(user),
                "issue": {"number": number, "state": "open", "user": _user(user),
                          "pull_request": {"url": f"https://api.github.com/repos/{self.repository}/pulls/{number}"}},
                "comment": {"id": comment_id, "body": body, "user": _user(user)}}

    def check_run_payload(self, check_run_id: int, identifier: str | None, user: str) -> dict[str, Any]:
        run = self.sim.repo(self.repository).check_runs[check_run_id]
        payload = {**self._base(), "action": "requested_action" if identifier else "rerequested",
                   "sender": _user(user),
                   "check_run": {"id": check_run_id, "name": run["name"], "head_sha": run["head_sha"],
                                 "external_id": run["external_id"], "status": run["status"],
                                 "conclusion": run["conclusion"], "app": {"id": self.sim.app_id},
                                 "pull_requests": []}}
        if identifier:
            payload["requested_action"] = {"identifier": identifier}
        return payload

    # -- acting ----------------------------------------------------------------------------

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        delivery = await self.server.deliver(event, payload, self.webhook_url, self.secret)
        if delivery.status not in (200, 202):
            raise RuntimeError(f"Flareship answered {delivery.status} to a {event} webhook: {delivery.body[:200]!r}")

    async def comment(self, number: int, body: str, *, user: str) -> int:
        """@user comments `body` on the PR (the comment exists on GitHub, then the webhook goes out)."""
        comment = self.sim.add_comment(self.repository, number, body, user=user)
        self.out(f"💬 @{user} on #{number}: {body}")
        await self.deliver("issue_comment", self.comment_payload(number, body, comment.id, user))
        return comment.id

    async def click(self, check_run_id: int, identifier: str, *, user: str) -> None:
        """@user clicks a check-run button (retry / rollback / promote)."""
        self.out(f"🖱️  @{user} clicks {identifier!r} on check run {check_run_id}")
        await self.deliver("check_run", self.check_run_payload(check_run_id, identifier, user))

    # -- watching (simulator state, no API calls) --------------------------------------------

    def reactions(self, comment_id: int) -> list[str]:
        comment = self.sim.repo(self.repository).comments.get(comment_id)
        return [content for content, _user, _id in (comment.reactions if comment else [])]

    async def wait_reactions(self, comment_id: int, count: int, timeout: float = 20) -> list[str]:
        """Wait until the comment has `count` reactions from Flareship; prints them."""
        deadline = time.monotonic() + timeout
        while len(self.reactions(comment_id)) < count and time.monotonic() < deadline:
            await asyncio.sleep(self.poll)
        found = self.reactions(comment_id)
        self.out("   reactions: " + " ".join(REACTION_EMOJI.get(r, r) for r in found))
        return found

    def check_runs(self, sha: str, environment: str) -> list[dict[str, Any]]:
        name = f"Deploy to {environment}"
        return [r for r in self.sim.repo(self.repository).check_runs.values()
                if r["head_sha"] == sha and r["name"] == name]

    async def watch_check_run(self, sha: str, environment: str, *, timeout: float = 40,
                              since_external_id: str | None = None) -> dict[str, Any]:
        """Print the `Deploy to <env>` check run's title each time it changes, until it completes.

        `since_external_id`: wait for a run carrying a newer deployment than this one (a re-run)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            runs = self.check_runs(sha, environment)
            run = runs[-1] if runs else None
            if run and run["external_id"] != since_external_id:
                shown = (run["status"], run["output"].get("title"))
                if shown != last:
                    last = shown
                    self.out(f"   ✔ check run 'Deploy to {environment}' [{run['status']}] {shown[1]}")
                if run["status"] == "completed":
                    self.out(f"   conclusion: {run['conclusion']}; buttons: "
                             + (", ".join(a["label"] for a in run.get("actions") or []) or "none"))
                    self.describe_deployment(run["external_id"], environment)
                    return run
            await asyncio.sleep(self.poll)
        raise TimeoutError(f"'Deploy to {environment}' on {sha[:7]} did not complete in {timeout}s")

    def describe_deployment(self, flareship_id: str, environment: str) -> None:
        repo = self.sim.repo(self.repository)
        for dep in repo.deployments.values():
            payload = dep.get("payload") or {}
            if isinstance(payload, dict) and payload.get("flareship_deployment_id") == flareship_id:
                statuses = repo.deployment_statuses.get(dep["id"], [])
                states = " -> ".join(s["state"] for s in statuses)
                url = next((s.get("environment_url") for s in reversed(statuses) if s.get("environment_url")), None)
                self.out(f"   GitHub deployment #{dep['id']} ({environment}): {states}" + (f"; URL {url}" if url else ""))

    def pr_comment(self, number: int) -> str | None:
        """The body of Flareship's one comment on the PR (edited in place)."""
        for comment in self.sim.repo(self.repository).comments.values():
            if comment.issue_number == number and COMMENT_MARKER in comment.body:
                return comment.body
        return None
