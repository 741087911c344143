"""PR-workflow harness: the real app on the simulated GitHub and Cloudflare, driven by signed webhooks.

`workflow` gives a `Workflow` object: the running app client, the GitHub sim state (recording
every request), helpers to build payloads from the real fixtures and to wait for the engine and
the reporter to finish. The integrator's demo can drive the same steps (see `Workflow` methods).
"""

from __future__ import annotations

import asyncio
import copy

import pytest

from bot.services import SERVICES
from bot.store.deliveries import DeliveryStore
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, CF_TOKEN
from tests.plugins.github_sim import seed_repo
from tests.plugins.webhooks import FAST, load_fixture, post_webhook

REPOSITORY = "acme/widgets"
INSTALLATION_ID = 4242
BASE_SHA = "0" * 39 + "1"
HEAD_SHA = "c0ffee" + "0" * 34
CONFIG = """\
app:
  name: widgets
  main: dist/index.js
  compatibility_date: "2025-09-01"
environments:
  staging:
    auto_deploy: true
    health_check: {path: /, timeout_seconds: 5}
  production:
    required_permission: maintain
    require_approval: true
    require_checks: true
    after: staging
    health_check: {path: /, timeout_seconds: 5}
"""
WORKER = 'export default { async fetch() { return new Response("ok"); } };\n'
FILES = {".github/flareship.yml": CONFIG, "dist/index.js": WORKER}


class Workflow:
    """One scenario: a repository with a PR on the simulated GitHub, Flareship on top."""

    def __init__(self, client, github_sim, cloudflare_sim):
        self.client = client
        self.github_sim = github_sim
        self.sim = github_sim.sim
        self.cloudflare_sim = cloudflare_sim
        self.services = client.server.app[SERVICES]

    # -- arranging ----------------------------------------------------------------------

    def add_pull_request(self, number: int = 7, head_sha: str = HEAD_SHA, **kw) -> None:
        self.sim.add_pull_request(REPOSITORY, number, head_sha=head_sha, **kw)

    # -- payloads -----------------------------------------------------------------------

    def point_at_repository(self, payload: dict) -> None:
        """Make a recorded payload name the test repository and installation."""
        payload["repository"]["full_name"] = REPOSITORY
        payload["repository"]["name"] = REPOSITORY.split("/")[1]
        payload["repository"]["owner"]["login"] = REPOSITORY.split("/")[0]
        payload["repository"]["default_branch"] = "main"
        payload["installation"] = {"id": INSTALLATION_ID}

    @staticmethod
    def _user(login: str, bot: bool = False) -> dict:
        return {"login": login, "id": abs(hash(login)) % 10**8, "type": "Bot" if bot else "User"}

    def comment_payload(self, body: str, *, user: str = "dev", number: int = 7, bot: bool = False,
                        action: str = "created") -> dict:
        payload = copy.deepcopy(load_fixture("issue_comment.created.pull_request"))
        self.point_at_repository(payload)
        payload["action"] = action
        payload["issue"]["number"] = number
        # The comment exists on the simulated GitHub too, so reactions can land on it.
        comment = self.sim.add_comment(REPOSITORY, number, body, user=user)
        payload["comment"]["id"] = comment.id
        payload["comment"]["body"] = body
        payload["comment"]["user"] = payload["sender"] = self._user(user, bot)
        return payload

    def label_payload(self, label: str, *, user: str = "lead", number: int = 7) -> dict:
        payload = copy.deepcopy(load_fixture("pull_request.labeled"))
        self.point_at_repository(payload)
        pr = self.sim.repo(REPOSITORY).pulls[number]
        payload["number"] = number
        payload["label"]["name"] = label
        payload["sender"] = self._user(user)
        pull = payload["pull_request"]
        pull.update(number=number, state="open")
        pull["head"]["sha"] = pr.head_sha
        pull["head"]["ref"] = pr.head_ref
        pull["head"]["repo"] = {**(pull["head"].get("repo") or {}), "full_name": REPOSITORY, "fork": False}
        pull["base"]["ref"] = "main"
        return payload

    def merge_payload(self, merge_sha: str, *, number: int = 7, user: str = "lead") -> dict:
        payload = copy.deepcopy(load_fixture("pull_request.closed.merged"))
        self.point_at_repository(payload)
        payload["number"] = number
        payload["sender"] = self._user(user)
        pull = payload["pull_request"]
        pull.update(number=number, merged=True, state="closed", merge_commit_sha=merge_sha,
                    merged_by=self._user(user))
        pull["base"]["ref"] = "main"
        return payload

    def check_run_payload(self, check_run_id: int, *, action: str = "requested_action",
                          identifier: str | None = None, user: str = "lead") -> dict:
        name = "check_run.requested_action" if action == "requested_action" else "check_run.rerequested"
        payload = copy.deepcopy(load_fixture(name))
        self.point_at_repository(payload)
        run = self.sim.repo(REPOSITORY).check_runs[check_run_id]
        payload["check_run"].update(id=check_run_id, name=run["name"], head_sha=run["head_sha"],
                                    external_id=run["external_id"], status=run["status"],
                                    conclusion=run["conclusion"])
        payload["check_run"]["app"] = {**payload["check_run"].get("app", {}), "id": self.sim.app_id}
        payload["sender"] = self._user(user)
        if identifier:
            payload["requested_action"] = {"identifier": identifier}
        return payload

    # -- acting -------------------------------------------------------------------------

    async def post(self, event: str, payload: dict, *, delivery_id: str | None = None):
        response = await post_webhook(self.client, event, payload, delivery_id=delivery_id)
        assert response.status in (200, 202), await response.text()
        return response

    async def comment(self, body: str, **kw) -> dict:
        payload = self.comment_payload(body, **kw)
        await self.post("issue_comment", payload)
        await self.settle()
        return payload

    async def settle(self, timeout: float = 20.0) -> None:
        """Wait until every stored delivery is handled, no deployment is active, and GitHub is written."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        while True:
            counts = await DeliveryStore(self.services.database).count_by_status()
            engine_counts = await self.services.engine.counts()
            busy = counts.get("pending", 0) + counts.get("processing", 0) + engine_counts.get("active", 0) \
                + engine_counts.get("queued", 0)
            if not busy and not self.services.reporter.writing():
                await asyncio.sleep(0.05)
                if not self.services.reporter.writing():
                    return
            assert loop.time() < deadline, f"not settled: deliveries {counts}, engine {engine_counts}"
            await asyncio.sleep(0.02)

    # -- observing ----------------------------------------------------------------------

    def check_runs(self, sha: str | None = None, env: str | None = None) -> list[dict]:
        runs = self.sim.repo(REPOSITORY).check_runs.values()
        return [r for r in runs if (sha is None or r["head_sha"] == sha)
                and (env is None or r["name"] == f"Deploy to {env}")]

    def reactions(self, comment_id: int) -> list[str]:
        comment = self.sim.repo(REPOSITORY).comments.get(comment_id)
        return [content for content, _user, _id in (comment.reactions if comment else [])]

    def flareship_comments(self, number: int = 7) -> list:
        return [c for c in self.sim.repo(REPOSITORY).comments.values()
                if c.issue_number == number and "flareship:pr-comment" in c.body]

    def deployments(self, env: str | None = None) -> list[dict]:
        return [d for d in self.sim.repo(REPOSITORY).deployments.values() if env is None or d["environment"] == env]

    def deployment_states(self, gh_deployment_id: int) -> list[str]:
        return [s["state"] for s in self.sim.repo(REPOSITORY).deployment_statuses.get(gh_deployment_id, [])]


@pytest.fixture
def workflow_settings() -> dict:
    """Settings a test gives its Flareship on top of the fast ones (parametrize to change)."""
    return {}


@pytest.fixture
async def workflow(github_sim, cloudflare_sim, make_flareship_client, workflow_settings):
    seed_repo(github_sim, REPOSITORY, installation_id=INSTALLATION_ID, sha=BASE_SHA, files=FILES)
    sim = github_sim.sim
    sim.add_collaborator(REPOSITORY, "dev", "write")
    sim.add_collaborator(REPOSITORY, "lead", "maintain")
    sim.add_collaborator(REPOSITORY, "reader", "read")
    client = await make_flareship_client(
        github_api_url=github_sim.url,
        github_app_id=str(github_sim.app_id),
        github_private_key=github_sim.app_private_key,
        github_write_interval=0,
        cloudflare_api_url=cloudflare_sim.url,
        cloudflare_api_token=CF_TOKEN,
        cloudflare_account_id=CF_ACCOUNT_ID,
        workers_url_template=cloudflare_sim.workers_url_template,
        container_registry_url=cloudflare_sim.registry_url,
        **{**FAST, **workflow_settings},
    )
    flow = Workflow(client, github_sim, cloudflare_sim)
    flow.add_pull_request(7)
    return flow


@pytest.fixture
def database_backend() -> str:
    """Workflow scenarios run on SQLite; the store's own tests cover PostgreSQL."""
    return "sqlite"
