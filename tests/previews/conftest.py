"""Previews harness: the real app on the simulated GitHub and Cloudflare, driven by signed `pull_request` webhooks.

`previews` gives a `Previews` scenario: a repository whose default branch enables previews
(`mode` by parametrizing `previews_mode`), a PR opened by `dev` (write), helpers that push,
close and reopen it through real deliveries, and a `restart()` that stops Flareship and starts
it again on the same database (what a crash or a deploy of Flareship does).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bot.services import SERVICES
from bot.sim.github import events as sim_events
from bot.store.deliveries import DeliveryStore
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, CF_TOKEN
from tests.plugins.github_sim import seed_repo
from tests.plugins.webhooks import FAST, post_webhook

REPOSITORY = "acme/shop"
INSTALLATION_ID = 5151
BASE_SHA = "b" * 40
WORKER = 'export default { async fetch() { return new Response("build %s"); } };\n'


def config(mode: str, *, extra: str = "") -> str:
    return f"""\
app:
  name: shop
  main: dist/index.js
  compatibility_date: "2025-09-01"
environments:
  staging:
    health_check: {{path: /, timeout_seconds: 5}}
  production:
    required_permission: maintain
previews:
  enabled: true
  mode: {mode}
{extra}"""


class Previews:
    """One scenario on the simulators; `number` is the PR most helpers act on."""

    def __init__(self, make_client: Any, settings: dict[str, Any], github_sim: Any, cloudflare_sim: Any) -> None:
        self.make_client = make_client
        self.settings = settings
        self.github_sim = github_sim
        self.sim = github_sim.sim
        self.cloudflare_sim = cloudflare_sim
        self.client: Any = None
        self.commits = 0

    async def start(self) -> None:
        self.client = await self.make_client(**{**FAST, "preview_removal_retry_seconds": 0.2, **self.settings})

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        await self.client.close()

    @property
    def services(self) -> Any:
        return self.client.server.app[SERVICES]

    # -- GitHub side ------------------------------------------------------------------------

    def new_sha(self) -> str:
        self.commits += 1
        return f"{self.commits:04x}" + uuid.uuid4().hex + "0000"

    def open_pr(self, number: int = 7, *, user: str = "dev", fork: bool = False) -> str:
        sha = self.new_sha()
        self.sim.add_commit(REPOSITORY, sha, parent=BASE_SHA, files={"dist/index.js": WORKER % sha[:7]})
        self.sim.add_pull_request(REPOSITORY, number, head_sha=sha, head_ref=f"feature-{number}", user=user, fork=fork)
        return sha

    def payload(self, action: str, number: int = 7, *, sender: str | None = None,
                before: str | None = None) -> dict[str, Any]:
        pr = self.sim.repo(REPOSITORY).pulls[number]
        who = sender or pr.user
        if action == "synchronize":
            return sim_events.pull_request_synchronize(self.sim, REPOSITORY, number, before or "", sender=who,
                                                       installation_id=INSTALLATION_ID)
        return sim_events.pull_request_event(self.sim, REPOSITORY, number, action, sender=who,
                                             installation_id=INSTALLATION_ID)

    async def deliver(self, action: str, number: int = 7, *, settle: bool = True, **kw: Any) -> None:
        response = await post_webhook(self.client, "pull_request", self.payload(action, number, **kw),
                                      delivery_id=str(uuid.uuid4()))
        assert response.status in (200, 202), await response.text()
        if settle:
            await self.settle()

    async def opened(self, number: int = 7, **kw: Any) -> None:
        await self.deliver("opened", number, **kw)

    async def pushed(self, number: int = 7, *, settle: bool = True) -> str:
        sha = self.new_sha()
        before, after = self.sim.push_to_pull_request(REPOSITORY, number, sha,
                                                      files={"dist/index.js": WORKER % sha[:7]})
        await self.deliver("synchronize", number, settle=settle, before=before)
        return after

    async def closed(self, number: int = 7, *, settle: bool = True) -> None:
        self.sim.close_pull_request(REPOSITORY, number)
        await self.deliver("closed", number, settle=settle)

    async def reopened(self, number: int = 7) -> None:
        self.sim.reopen_pull_request(REPOSITORY, number)
        await self.deliver("reopened", number)

    async def comment(self, body: str, number: int = 7, user: str = "dev") -> int:
        comment = self.sim.add_comment(REPOSITORY, number, body, user=user)
        payload = sim_events.issue_comment_created(self.sim, REPOSITORY, number, comment.id,
                                                   installation_id=INSTALLATION_ID)
        response = await post_webhook(self.client, "issue_comment", payload, delivery_id=str(uuid.uuid4()))
        assert response.status in (200, 202)
        await self.settle()
        return int(comment.id)

    async def settle(self, timeout: float = 30.0) -> None:
        """Every delivery handled, no deployment active, GitHub written."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            counts = await DeliveryStore(self.services.database).count_by_status()
            engine = await self.services.engine.counts()
            busy = counts.get("pending", 0) + counts.get("processing", 0) + engine.get("active", 0) \
                + engine.get("queued", 0)
            if not busy and not self.services.reporter.writing():
                await asyncio.sleep(0.1)
                if not self.services.reporter.writing():
                    return
            assert loop.time() < deadline, f"not settled: deliveries {counts}, engine {engine}"
            await asyncio.sleep(0.02)

    # -- observing --------------------------------------------------------------------------

    def main_module(self, number: int = 7) -> str:
        """The main module Cloudflare serves for the PR's preview (either mode)."""
        record_script = f"shop-staging-pr-{number}"
        cf = self.cloudflare_sim.sim
        preview = cf.previews.find(CF_ACCOUNT_ID, "shop-staging", f"pr-{number}")
        if preview is not None and preview.deployments:
            module = preview.deployments[-1].modules["index.js"]
        else:
            script = cf.scripts[(CF_ACCOUNT_ID, record_script)]
            module = script.version(script.live_version_id() or "").modules["index.js"]
        return module.content.decode()

    def on_cloudflare(self, number: int = 7) -> bool:
        cf = self.cloudflare_sim.sim
        return cf.previews.find(CF_ACCOUNT_ID, "shop-staging", f"pr-{number}") is not None \
            or (CF_ACCOUNT_ID, f"shop-staging-pr-{number}") in cf.scripts

    def gh_deployments(self, number: int = 7) -> list[dict[str, Any]]:
        return [d for d in self.sim.repo(REPOSITORY).deployments.values()
                if d["environment"] == f"preview/pr-{number}"]

    def states(self, gh_deployment: dict[str, Any]) -> list[str]:
        return [s["state"] for s in self.sim.repo(REPOSITORY).deployment_statuses.get(gh_deployment["id"], [])]

    def check_runs(self, sha: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.sim.repo(REPOSITORY).check_runs.values()
                if r["name"] == "Deploy to preview" and (sha is None or r["head_sha"] == sha)]

    def comment_body(self, number: int = 7) -> str:
        found = [c.body for c in self.sim.repo(REPOSITORY).comments.values()
                 if c.issue_number == number and "flareship:pr-comment" in c.body]
        assert len(found) == 1, f"{len(found)} Flareship comments"
        return found[0]

    async def deployments(self, number: int = 7) -> list[Any]:
        return [d for d in await self.services.engine.list(repository=REPOSITORY, environment="preview", limit=100)
                if d.pull_request == number]

    async def record(self, number: int = 7) -> Any:
        return await self.services.previews.store.get(REPOSITORY, number)


@pytest.fixture
def database_backend() -> str:
    """Scenarios run on SQLite; the store's own test covers PostgreSQL."""
    return "sqlite"


@pytest.fixture
def previews_mode() -> str:
    return "script"


@pytest.fixture
def previews_config(previews_mode: str) -> str:
    return config(previews_mode)


@pytest.fixture
async def previews(github_sim, cloudflare_sim, make_flareship_client, previews_config):
    seed_repo(github_sim, REPOSITORY, installation_id=INSTALLATION_ID, sha=BASE_SHA,
              files={".github/flareship.yml": previews_config, "dist/index.js": WORKER % "base"})
    sim = github_sim.sim
    sim.add_collaborator(REPOSITORY, "dev", "write")
    sim.add_collaborator(REPOSITORY, "lead", "maintain")
    sim.add_collaborator(REPOSITORY, "reader", "read")
    settings = dict(
        github_api_url=github_sim.url, github_app_id=str(github_sim.app_id),
        github_private_key=github_sim.app_private_key, github_write_interval=0,
        cloudflare_api_url=cloudflare_sim.url, cloudflare_api_token=CF_TOKEN,
        cloudflare_account_id=CF_ACCOUNT_ID, workers_url_template=cloudflare_sim.workers_url_template,
        container_registry_url=cloudflare_sim.registry_url,
    )
    scenario = Previews(make_flareship_client, settings, github_sim, cloudflare_sim)
    # The parent Worker of previews mode: staging's, deployed before any preview hangs off it.
    account = cloudflare_sim.sim.accounts[CF_ACCOUNT_ID]
    cloudflare_sim.sim.previews.create_worker(account, {"name": "shop-staging",
                                                        "subdomain": {"enabled": True, "previews_enabled": True}})
    await scenario.start()
    return scenario
