"""Which GitHub App permission each GitHub call Flareship makes relies on, and what each webhook
event needs, so `app.yml` can ask for exactly that (tests/test_manifest.py checks it both ways).

Levels are the fine-grained permissions GitHub's REST docs list per endpoint
(https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps); where an
endpoint accepts one of several, the one Flareship's manifest grants is named.
"""

from __future__ import annotations

from typing import Final

LEVELS: Final = {"read": 1, "write": 2, "admin": 3}
R = "/repos/{owner}/{repo}"

#: (method, path template of bot/sim/specs/github-openapi-subset.json) -> (permission, level);
#: None: authenticated as the App (JWT) or not at all, so no installation permission applies.
CALL_PERMISSIONS: Final[dict[tuple[str, str], tuple[str, str] | None]] = {
    ("GET", "/app"): None,
    ("POST", "/app-manifests/{code}/conversions"): None,  # flareship setup (bot/setup/server.py)
    ("GET", "/app/installations/{installation_id}"): None,
    ("POST", "/app/installations/{installation_id}/access_tokens"): None,
    ("GET", "/rate_limit"): None,
    ("GET", R + "/installation"): None,
    ("GET", R): ("metadata", "read"),
    ("GET", R + "/collaborators/{username}/permission"): ("metadata", "read"),
    # Build artifacts of Actions runs (the build-artifact deployments).
    ("GET", R + "/actions/artifacts"): ("actions", "read"),
    ("GET", R + "/actions/artifacts/{artifact_id}"): ("actions", "read"),
    ("GET", R + "/actions/artifacts/{artifact_id}/{archive_format}"): ("actions", "read"),
    ("GET", R + "/actions/runs"): ("actions", "read"),
    ("GET", R + "/actions/runs/{run_id}"): ("actions", "read"),
    ("GET", R + "/actions/runs/{run_id}/artifacts"): ("actions", "read"),
    ("GET", R + "/branches/{branch}"): ("contents", "read"),
    ("GET", R + "/compare/{basehead}"): ("contents", "read"),
    ("GET", R + "/contents/{path}"): ("contents", "read"),
    ("GET", R + "/tarball/{ref}"): ("contents", "read"),
    ("POST", R + "/check-runs"): ("checks", "write"),
    ("GET", R + "/check-runs/{check_run_id}"): ("checks", "read"),
    ("PATCH", R + "/check-runs/{check_run_id}"): ("checks", "write"),
    ("GET", R + "/commits/{ref}/check-runs"): ("checks", "read"),
    ("GET", R + "/commits/{ref}/status"): ("statuses", "read"),
    ("GET", R + "/deployments"): ("deployments", "read"),
    ("POST", R + "/deployments"): ("deployments", "write"),
    ("GET", R + "/deployments/{deployment_id}"): ("deployments", "read"),
    ("DELETE", R + "/deployments/{deployment_id}"): ("deployments", "write"),
    ("GET", R + "/deployments/{deployment_id}/statuses"): ("deployments", "read"),
    ("POST", R + "/deployments/{deployment_id}/statuses"): ("deployments", "write"),
    ("GET", R + "/environments"): ("deployments", "read"),  # or actions: read
    # Pull requests are issues: their comments, reactions and labels take `issues`.
    ("GET", R + "/issues/{issue_number}/comments"): ("issues", "read"),
    ("POST", R + "/issues/{issue_number}/comments"): ("issues", "write"),
    ("PATCH", R + "/issues/comments/{comment_id}"): ("issues", "write"),
    ("DELETE", R + "/issues/comments/{comment_id}"): ("issues", "write"),
    ("POST", R + "/issues/comments/{comment_id}/reactions"): ("issues", "write"),
    ("DELETE", R + "/issues/{issue_number}/labels/{name}"): ("issues", "write"),
    ("GET", R + "/pulls"): ("pull_requests", "read"),
    ("GET", R + "/pulls/{pull_number}"): ("pull_requests", "read"),
    ("GET", R + "/pulls/{pull_number}/reviews"): ("pull_requests", "read"),
}

#: Webhook event -> the permission whose grant lets an App subscribe to it
#: (https://docs.github.com/en/webhooks/webhook-events-and-payloads).
EVENT_PERMISSIONS: Final[dict[str, tuple[str, str]]] = {
    "check_run": ("checks", "read"),
    "issue_comment": ("issues", "read"),
    "pull_request": ("pull_requests", "read"),
    "workflow_run": ("actions", "read"),
}

#: Sent to every GitHub App without a subscription (they cannot be listed in `default_events`).
ALWAYS_DELIVERED: Final = frozenset({"installation", "installation_repositories", "github_app_authorization",
                                     "meta", "ping"})


def required_permissions(calls: set[tuple[str, str]], events: set[str]) -> dict[str, str]:
    """The least grant that covers `calls` and subscribing to `events`: {permission: level}.

    KeyError names a call or event this module has no entry for (add it, with the docs' level).
    """
    needed: dict[str, str] = {"metadata": "read"}  # every App has it; GitHub adds it when missing
    wanted = [CALL_PERMISSIONS[call] for call in sorted(calls)]
    wanted += [EVENT_PERMISSIONS[event] for event in sorted(events)]
    for entry in wanted:
        if entry is None:
            continue
        name, level = entry
        if LEVELS[level] > LEVELS.get(needed.get(name, ""), 0):
            needed[name] = level
    return dict(sorted(needed.items()))
