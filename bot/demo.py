"""`flareship demo`: Flareship's main job, end to end, on its embedded defaults.

Everything runs on loopback in this process: the simulated GitHub, the simulated Cloudflare (API,
served Workers, account registry), a source image registry, and Flareship itself on a SQLite file
in a temporary folder. The simulated GitHub delivers signed webhooks to Flareship exactly as GitHub
does; a CI script talks to the REST API with a bearer token. The demo prints what each actor sees
and exits non-zero if anything did not happen as it should.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = "acme/my-app"
INSTALLATION_ID = 4242
PR_NUMBER = 7
BASE_SHA = "b" * 40
HEAD_SHA = "5eed" + "c0de" * 9
NEXT_SHA = "f1c5" + "2bad" * 9
PREVIEW_PR = 8
PREVIEW_SHA = "9e71" + "ab1e" * 9
PREVIEW_NEXT_SHA = "9e72" + "cafe" * 9
SECRET = "demo-webhook-secret-" + uuid.uuid4().hex[:8]
CF_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
CF_TOKEN = "demo-cloudflare-token-0123456789"

CONFIG = """\
app:
  name: my-app
  # TypeScript: CI builds it (.github/workflows/build.yml, docs/build-workflow.md), Flareship deploys the artifact
  build: {{artifact: worker, timeout_minutes: 10}}
  container:
    image: {image}
    class_name: AppContainer
    instance_type: basic
    max_instances: 2
  durable_objects: [AppContainer, Counter]
  vars: {{LOG_LEVEL: info}}
environments:
  staging:
    auto_deploy: true
    health_check: {{path: /health, timeout_seconds: 10}}
  production:
    required_permission: maintain
    require_approval: true
    after: staging
    health_check: {{path: /health, timeout_seconds: 10}}
previews:
  enabled: true
  mode: script        # a Worker (and container application) per pull request
  max: 5
"""
KV_ID = "0f2ac74b498b48028cb68387c421e279"
WRANGLER = f"""\
{{
  // wrangler.jsonc: what `wrangler deploy` reads, and Flareship with it
  "name": "my-app",
  "main": "src/index.ts",
  "compatibility_date": "2025-09-01",
  "kv_namespaces": [{{ "binding": "CACHE", "id": "{KV_ID}" }}],
  "assets": {{ "directory": "./public", "binding": "ASSETS" }}
}}
"""
SOURCE = """\
import { DurableObject } from "cloudflare:workers";
import { Container } from "@cloudflare/containers";
import { answer } from "./lib/util";
export class AppContainer extends Container { defaultPort = 8080; }
export class Counter extends DurableObject {}
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    await env.CACHE.put("answer", String(answer));
    return env.APP_CONTAINER.get(env.APP_CONTAINER.idFromName("main")).fetch(request);
  },
} satisfies ExportedHandler<Env>;
"""
#: What `npx wrangler deploy --dry-run --outdir dist` writes for SOURCE (@cloudflare/containers bundled in).
BUNDLE = """\
import { DurableObject } from "cloudflare:workers";
import { answer } from "./lib/util.js";
class Container extends DurableObject {}
export class AppContainer extends Container { defaultPort = 8080; }
export class Counter extends DurableObject {}
export default {
  async fetch(request, env) {
    await env.CACHE.put("answer", String(answer));
    return env.APP_CONTAINER.get(env.APP_CONTAINER.idFromName("main")).fetch(request);
  },
};
"""
INDEX_HTML = "<!doctype html><title>my-app</title><h1>Hello from my-app</h1>\n"


def build_artifact(answer: int) -> dict[str, bytes | str]:
    """The artifact the demo's CI uploads (docs/build-workflow.md's layout)."""
    return {"index.js": BUNDLE, "lib/util.js": f"export const answer = {answer};\n", "assets/index.html": INDEX_HTML}


class Story:
    """Narrates the demo and remembers whether every expectation held."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.started = time.monotonic()

    def chapter(self, title: str) -> None:
        print(f"\n== {title}")

    def say(self, text: str) -> None:
        print(f"   {text}")

    def expect(self, ok: bool, what: str) -> bool:
        print(f"   {'ok ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)
        return ok


async def wait_for(probe: Callable[[], Awaitable[Any] | Any], *, timeout: float = 30.0, interval: float = 0.05):
    """Poll `probe` until it returns something truthy (or the time runs out: returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(interval)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Demo:
    def __init__(self, workdir: Path, story: Story):
        self.workdir = workdir
        self.story = story
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.staging_url: str | None = None

    # -- set-up ---------------------------------------------------------------------------

    async def start(self) -> None:
        from bot.app import init_app
        from bot.logs import configure_logging
        from bot.settings import Settings
        from bot.sim.cloudflare import start_cloudflare_sim
        from bot.sim.github import start_github_sim
        from bot.sim.registry import build_test_image, seed_image, start_registry

        configure_logging("ERROR", "text")
        self.github = await start_github_sim()
        self.closers.append(self.github.close)
        self.cloudflare = await start_cloudflare_sim()
        self.closers.append(self.cloudflare.close)
        self.cloudflare.seed_account(CF_ACCOUNT_ID, CF_TOKEN, name="Acme", plan="paid", subdomain="acme")
        self.source_registry = await start_registry()
        self.closers.append(self.source_registry.close)
        image = build_test_image("my-app:demo", layers=2, layer_bytes=2048)
        seed_image(self.source_registry.state, "acme/my-app", "demo", image)
        self.image = f"{self.source_registry.host}/acme/my-app:demo"

        sock = _free_socket()
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.settings = Settings(
            github_app_id=str(self.github.app_id),
            github_private_key=self.github.app_private_key,
            github_webhook_secret=SECRET,
            github_api_url=self.github.url,
            github_write_interval=0,
            github_report_interval=0.5,  # twice a second (the default is once): see the latency below
            cloudflare_api_url=self.cloudflare.url,
            cloudflare_api_token=CF_TOKEN,
            cloudflare_account_id=CF_ACCOUNT_ID,
            container_registry_url=self.cloudflare.registry_url,
            workers_url_template=self.cloudflare.workers_url_template,
            database_url=f"sqlite:///{self.workdir / 'flareship.db'}",
            public_url=self.url,
            environment_overrides={},
            build_poll_seconds=0.25,  # a real deployment looks at the SHA's CI runs every 15 s; the demo's CI is quick
        )
        self.app = init_app(self.settings)
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        await web.SockSite(runner, sock, shutdown_timeout=1).start()
        self.closers.append(runner.cleanup)
        # Real Cloudflare answers in tens of milliseconds and a real deploy lasts long enough for
        # the check run to show each step; give the simulator some latency and let the reporter
        # write twice a second (the default is once a second) so the demo shows the same.
        self.cloudflare.sim.set_latency(0.04)
        self.http = aiohttp.ClientSession()
        self.closers.append(self.http.close)
        self._seed_repository()

    def _seed_repository(self) -> None:
        sim = self.github.sim
        sim.add_installation(INSTALLATION_ID, account="acme", repositories=[])
        sim.add_repo(REPO, installation_id=INSTALLATION_ID, head_sha=BASE_SHA)
        from bot.sim.github.actions import add_run, finish_run

        self.cloudflare.sim.storage.add_kv_namespace(CF_ACCOUNT_ID, "my-app-cache", id=KV_ID)
        files = {".github/flareship.yml": CONFIG.format(image=self.image), "wrangler.jsonc": WRANGLER,
                 "src/index.ts": SOURCE, "src/lib/util.ts": "export const answer = 42;\n",
                 "public/index.html": INDEX_HTML, "package.json": '{"scripts": {"build": "tsc --noEmit"}}\n'}
        for path, content in files.items():
            sim.set_file(REPO, BASE_SHA, path, content)
        sim.add_pull_request(REPO, PR_NUMBER, head_sha=HEAD_SHA, head_ref="feature/greeting",
                             user="dev", title="Greet in French")
        for path, content in files.items():
            sim.set_file(REPO, HEAD_SHA, path, content)
        finish_run(sim, add_run(sim, REPO, HEAD_SHA, head_branch="feature/greeting"),
                   artifacts={"worker": build_artifact(42)})
        sim.add_collaborator(REPO, "dev", "write")
        sim.add_collaborator(REPO, "lead", "maintain")
        sim.add_collaborator(REPO, "reader", "read")

    async def close(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception as exc:  # pragma: no cover - best effort teardown
                print(f"   (teardown: {exc!r})")

    # -- acting like GitHub ----------------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/github"

    async def deliver(self, event: str, payload: dict, *, delivery_id: str | None = None,
                      secret: str | None = SECRET):
        return await self.github.deliver(event, payload, self.webhook_url, secret, delivery_id=delivery_id)

    async def comment(self, login: str, body: str):
        from bot.sim.github import events

        comment = self.github.sim.add_comment(REPO, PR_NUMBER, body, user=login)
        payload = events.issue_comment_created(self.github.sim, REPO, PR_NUMBER, comment.id,
                                               installation_id=INSTALLATION_ID)
        delivery = await self.deliver("issue_comment", payload)
        return comment, delivery

    def reactions(self, comment_id: int) -> list[str]:
        comment = self.github.sim.repo(REPO).comments[comment_id]
        return [content for content, _user, _id in comment.reactions]

    def check_run(self, env: str, sha: str) -> dict | None:
        runs = [r for r in self.github.sim.repo(REPO).check_runs.values()
                if r["name"] == f"Deploy to {env}" and r["head_sha"] == sha]
        return runs[-1] if runs else None

    def flareship_comment(self) -> str:
        bodies = [c.body for c in self.github.sim.repo(REPO).comments.values()
                  if c.issue_number == PR_NUMBER and c.user != "dev" and "flareship" in c.body.lower()
                  and c.user not in ("lead", "reader")]
        return bodies[-1] if bodies else ""

    async def follow_check_run(self, env: str, sha: str, *, timeout: float = 40.0) -> dict | None:
        """Print each new title of the check run until it completes."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.check_run(env, sha)
            if run:
                title = ((run.get("output") or {}).get("title")) or run["status"]
                if title not in seen:
                    seen.add(title)
                    self.story.say(f"check run '{run['name']}': {run['status']:<11} {title}")
                if run["status"] == "completed" and await self.idle():
                    return self.check_run(env, sha)
            await asyncio.sleep(0.05)
        return self.check_run(env, sha)

    async def idle(self) -> bool:
        from bot.services import SERVICES

        services = self.app[SERVICES]
        counts = await services.engine.counts()
        return not counts.get("active") and not counts.get("queued")

    def github_deployments(self, env: str) -> list[tuple[dict, list[str]]]:
        repo = self.github.sim.repo(REPO)
        return [(d, [s["state"] for s in repo.deployment_statuses.get(d["id"], [])])
                for d in repo.deployments.values() if d["environment"] == env]

    async def open_page(self, url: str) -> str | None:
        """An HTML page of Flareship's, as a browser opening a link from GitHub would get it."""
        try:
            async with self.http.get(url) as response:
                return await response.text() if response.status == 200 else None
        except aiohttp.ClientError:
            return None

    async def fetch_live(self, url: str) -> dict | None:
        try:
            async with self.http.get(url.rstrip("/") + "/health") as response:
                return await response.json()
        except (aiohttp.ClientError, ValueError):
            return None


# -- chapters ------------------------------------------------------------------------------


async def webhook_intake(demo: Demo, story: Story) -> None:
    from bot.sim.github import events

    story.chapter("1. GitHub delivers webhooks")
    ping = await demo.deliver("ping", events.ping(demo.github.sim))
    story.expect(ping.status == 200, f"ping answered {ping.status}")
    comment = demo.github.sim.add_comment(REPO, PR_NUMBER, "Looks good to me!", user="reader")
    payload = events.issue_comment_created(demo.github.sim, REPO, PR_NUMBER, comment.id,
                                           installation_id=INSTALLATION_ID)
    first = await demo.deliver("issue_comment", payload, delivery_id="11111111-demo-0000-0000-000000000001")
    story.expect(first.status == 202, f"an ordinary PR comment is stored and acknowledged ({first.status})")
    again = await demo.deliver("issue_comment", payload, delivery_id="11111111-demo-0000-0000-000000000001")
    body = again.json() or {}
    story.expect(again.status in (200, 202), f"the same X-GitHub-Delivery again is acknowledged ({again.status}) "
                                             f"and not processed twice: {json.dumps(body.get('data', body))[:80]}")
    forged = await demo.deliver("issue_comment", payload, secret="not-the-secret")
    code = ((forged.json() or {}).get("error") or {}).get("code")
    story.expect(forged.status == 401, f"a forged signature is refused: {forged.status} {code}")
    await asyncio.sleep(0.3)
    story.expect(not demo.reactions(comment.id), "comments that are not commands get no reaction")


async def deploy_staging(demo: Demo, story: Story) -> dict | None:
    story.chapter("2. dev comments '/deploy staging' on PR #7")
    comment, delivery = await demo.comment("dev", "/deploy staging")
    story.say(f"webhook acknowledged: {delivery.status}")
    eyes = await wait_for(lambda: "eyes" in demo.reactions(comment.id), timeout=10)
    story.expect(bool(eyes), "👀 reaction on the comment")
    run = await demo.follow_check_run("staging", HEAD_SHA)
    ok = run is not None and run.get("conclusion") == "success"
    story.expect(ok, f"check run completed: {run and run.get('conclusion')}")
    if run:
        labels = [a["label"] for a in run.get("actions") or []]
        story.say(f"buttons: {', '.join(labels) or '(none)'}; details: {run.get('details_url')}")
        if run.get("details_url"):
            page = await demo.open_page(run["details_url"])
            story.expect(page is not None and "to staging: completed" in page,
                         "the Details link opens the live page without an API token")
    deployments = demo.github_deployments("staging")
    if deployments:
        gh, states = deployments[-1]
        story.expect("success" in states, f"GitHub deployment #{gh['id']} statuses: {' -> '.join(states)}")
        url = next((s.get("environment_url") for s in reversed(
            demo.github.sim.repo(REPO).deployment_statuses[gh["id"]]) if s.get("environment_url")), None)
        live = await demo.fetch_live(url) if url else None
        demo.staging_url = url
        story.expect(bool(live and live.get("status") == "healthy"),
                     f"live at {url}: version {live and live.get('version_number')}")
        page = await demo.open_page(url) if url else None
        story.expect(bool(page and "Hello from my-app" in page), "static assets from the CI artifact are served at /")
        script = demo.cloudflare.sim.script(CF_ACCOUNT_ID, "my-app-staging")
        version = script.version(script.live_version_id() or "") if script else None
        bindings = version.metadata.get("bindings", []) if version else []
        story.expect(any(b.get("type") == "kv_namespace" for b in bindings),
                     "built from src/index.ts by CI, with its KV namespace bound as CACHE")
    else:
        story.expect(False, "a GitHub deployment for staging")
    story.expect("rocket" in demo.reactions(comment.id), "🚀 reaction once live")
    table = demo.flareship_comment()
    story.say("the PR's Flareship comment:")
    for line in table.splitlines():
        if line.startswith("|"):
            story.say("  " + line)
    return run


async def refused_production(demo: Demo, story: Story) -> None:
    story.chapter("3. reader comments '/deploy production' (read-only)")
    comment, _ = await demo.comment("reader", "/deploy production")
    confused = await wait_for(lambda: "confused" in demo.reactions(comment.id), timeout=10)
    story.expect(bool(confused), "😕 reaction: refused")
    reason = [line for line in demo.flareship_comment().splitlines() if "reader" in line or "efused" in line]
    story.say(f"reason given: {reason[-1].strip() if reason else '(none found)'}")
    story.expect(demo.check_run("production", HEAD_SHA) is None, "nothing was deployed to production")


async def promote(demo: Demo, story: Story, staging_run: dict | None) -> None:
    from bot.sim.github import events

    story.chapter("4. lead (maintain) approves the PR and clicks Promote on the staging check run")
    demo.github.sim.add_review(REPO, PR_NUMBER, user="lead", state="APPROVED")
    if not staging_run:
        story.expect(False, "a staging check run to click")
        return
    actions = {a["identifier"]: a for a in staging_run.get("actions") or []}
    identifier = next((i for i in actions if i.startswith("promote")), None)
    if not story.expect(identifier is not None, f"the check run offers Promote ({', '.join(actions)})") or identifier is None:
        return
    payload = events.check_run_requested_action(demo.github.sim, REPO, staging_run["id"], identifier,
                                                sender="lead", installation_id=INSTALLATION_ID)
    await demo.deliver("check_run", payload)
    run = await demo.follow_check_run("production", HEAD_SHA)
    story.expect(run is not None and run.get("conclusion") == "success",
                 f"production check run: {run and run.get('conclusion')}")


async def push_and_redeploy(demo: Demo, story: Story) -> None:
    story.chapter(f"5. dev pushes {NEXT_SHA[:7]} to the PR and comments '/deploy' (staging is the default)")
    sim = demo.github.sim
    for path, content in sim.repo(REPO).files[HEAD_SHA].items():
        sim.set_file(REPO, NEXT_SHA, path, content)
    sim.set_file(REPO, NEXT_SHA, "src/lib/util.ts", "export const answer = 43;\n")
    sim.repo(REPO).pulls[PR_NUMBER].head_sha = NEXT_SHA
    from bot.sim.github.actions import add_run, finish_run

    build = add_run(sim, REPO, NEXT_SHA, status="in_progress", head_branch="feature/greeting")
    _comment, _ = await demo.comment("dev", "/deploy")
    waiting = await wait_for(lambda: any("Waiting for build" in (r.get("output") or {}).get("text", "")
                                         for r in sim.repo(REPO).check_runs.values()
                                         if r.get("head_sha") == NEXT_SHA), timeout=20)
    story.expect(bool(waiting), f"the check run says 'Waiting for build' while CI run {build.id} is in progress")
    finish_run(sim, build, artifacts={"worker": build_artifact(43)})
    run = await demo.follow_check_run("staging", NEXT_SHA)
    story.expect(run is not None and run.get("conclusion") == "success", f"check run on {NEXT_SHA[:7]}: "
                 f"{run and run.get('conclusion')}")
    live = await demo.fetch_live(demo.staging_url) if demo.staging_url else None
    story.say(f"staging now serves Worker version {live and live.get('version_number')}")


async def rollback_staging(demo: Demo, story: Story) -> None:
    story.chapter("6. dev comments '/rollback staging'")
    before = len(demo.github_deployments("staging"))
    comment, _ = await demo.comment("dev", "/rollback staging")
    done = await wait_for(lambda: ("rocket" in demo.reactions(comment.id) or "confused" in demo.reactions(comment.id))
                          and demo.idle(), timeout=30)
    ok = bool(done) and "rocket" in demo.reactions(comment.id)
    if not story.expect(ok, f"rolled back (reactions: {' '.join(demo.reactions(comment.id))})"):
        story.say(demo.flareship_comment()[-300:])
    deployments = demo.github_deployments("staging")
    story.say(f"GitHub deployments for staging: {len(deployments)} (was {before}); latest statuses: "
              f"{' -> '.join(deployments[-1][1]) if deployments else '-'}")
    live = await demo.fetch_live(demo.staging_url) if demo.staging_url else None
    story.expect(live is not None and live.get("version_number") == 1,
                 f"staging serves Worker version {live and live.get('version_number')} again")


async def rest_api(demo: Demo, story: Story) -> None:
    from bot.services import SERVICES

    story.chapter("7. a CI script drives a container-only app through the REST API")
    services = demo.app[SERVICES]
    _record, token = await services.api_tokens.create(name="demo-ci", scopes=["read", "deploy:staging"])
    story.say("token created (as `flareship token create --scope read --scope deploy:staging --name demo-ci`)")
    headers = {"Authorization": f"Bearer {token}"}

    async def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        async with demo.http.request(method, demo.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    status, body = await call("POST", "/deploy/validate", {
        "environment": "staging", "credentials": {"cloudflareApiToken": CF_TOKEN, "accountId": CF_ACCOUNT_ID}})
    story.expect(status == 200, f"POST /deploy/validate -> {status} {json.dumps(body.get('data', body))[:120]}")
    status, body = await call("POST", "/deploy/validate", {
        "environment": "staging", "credentials": {"cloudflareApiToken": "wrong-token-000000", "accountId": CF_ACCOUNT_ID}})
    story.expect(status == 401, f"a bad Cloudflare token -> {status} {(body.get('error') or {}).get('code')}")

    releases = []
    for greeting in ("hello", "bonjour"):
        status, body = await call("POST", "/deploy/prepare", {"environment": "staging", "config": {
            "appName": "hello-container", "containerImage": demo.image, "durableObjects": ["AppContainer"],
            "environmentVars": {"GREETING": greeting}}})
        data = body.get("data") or {}
        story.expect(status == 200 and bool(data.get("prepared")), f"POST /deploy/prepare ({greeting}) -> {status} checks "
                     f"{data.get('checks')} cost {data.get('estimatedCost')}")
        if status != 200:
            return
        deployment_id = data["deploymentId"]
        status, body = await call("POST", "/deploy", {"deploymentId": deployment_id, "environment": "staging",
                                                       "options": {"dryRun": False, "rollbackOnFailure": True,
                                                                   "maxRetries": 3}})
        story.expect(status in (200, 202), f"POST /deploy -> {status} {(body.get('data') or {}).get('status')}")
        lines = await stream_logs(demo, deployment_id, headers)
        story.say(f"GET /deploy/{deployment_id}/logs streamed {len(lines)} lines, last: "
                  f"{lines[-1] if lines else '-'}")
        status, body = await call("GET", f"/deploy/{deployment_id}/status")
        data = body.get("data") or {}
        story.expect(data.get("status") == "completed", f"status {data.get('status')}, progress {data.get('progress')}")
        releases.append(deployment_id)

    status, body = await call("POST", f"/deploy/{releases[-1]}/rollback", {"reason": "demo: back to hello"})
    data = body.get("data") or {}
    story.expect(status in (200, 202), f"POST /deploy/{releases[-1]}/rollback -> {status} "
                 f"target {data.get('targetVersion')}")
    rollback_id = data.get("rollbackId")
    if rollback_id:
        final = await wait_for(lambda: _final_status(call, rollback_id), timeout=30)
        story.expect(final == "completed", f"rollback {rollback_id} finished: {final}")


async def _final_status(call, deployment_id: str) -> str | None:
    _status, body = await call("GET", f"/deploy/{deployment_id}/status")
    status = (body.get("data") or {}).get("status")
    return status if status in ("completed", "failed", "rolled_back", "cancelled") else None


async def stream_logs(demo: Demo, deployment_id: str, headers: dict) -> list[str]:
    """Read the SSE stream until its end event; returns the messages."""
    messages: list[str] = []
    async with demo.http.get(f"{demo.url}/deploy/{deployment_id}/logs", headers=headers,
                             timeout=aiohttp.ClientTimeout(total=60)) as response:
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                try:
                    messages.append(json.loads(line[6:]).get("message", ""))
                except ValueError:
                    pass
            if line.startswith("event: end"):
                break
    return messages


async def pull_request_preview(demo: Demo, story: Story) -> None:
    """Chapter 8: a PR's own preview, from open to close (README "Previews")."""
    from bot.services import SERVICES
    from bot.sim.github import events
    from bot.sim.github.actions import add_run, finish_run

    story.chapter(f"8. dev opens PR #{PREVIEW_PR}: it gets its own preview, updated by each push, gone when closed")
    sim, cf = demo.github.sim, demo.cloudflare.sim
    services = demo.app[SERVICES]
    store = services.previews.store
    sim.add_commit(REPO, PREVIEW_SHA, parent=HEAD_SHA, files={"src/lib/util.ts": "export const answer = 44;\n"},
                   branch="feature/preview")
    finish_run(sim, add_run(sim, REPO, PREVIEW_SHA, head_branch="feature/preview"),
               artifacts={"worker": build_artifact(44)})
    sim.add_pull_request(REPO, PREVIEW_PR, head_sha=PREVIEW_SHA, head_ref="feature/preview", user="dev",
                         title="Try a new answer")
    await demo.deliver("pull_request", events.pull_request_opened(sim, REPO, PREVIEW_PR,
                                                                  installation_id=INSTALLATION_ID))
    run = await demo.follow_check_run("preview", PREVIEW_SHA)
    story.expect(run is not None and run.get("conclusion") == "success",
                 f"check run 'Deploy to preview' on {PREVIEW_SHA[:7]}: {run and run.get('conclusion')}")
    record = await store.get(REPO, PREVIEW_PR)
    url = record.url if record else None
    story.say(f"preview pr-{PREVIEW_PR}: Worker {record and record.script_name} at {url}")

    def served_answer() -> str | None:
        script = cf.scripts.get((CF_ACCOUNT_ID, record.script_name)) if record else None
        version = script.version(script.live_version_id() or "") if script else None
        module = version.modules.get("lib/util.js") if version else None
        return module.content.decode().strip() if module else None
    live = await demo.fetch_live(url) if url else None
    story.expect(bool(live) and served_answer() == "export const answer = 44;",
                 f"the preview answers with the PR's code ({served_answer()}, version {live and live.get('version_number')})")
    before, after = sim.push_to_pull_request(REPO, PREVIEW_PR, PREVIEW_NEXT_SHA,
                                             files={"src/lib/util.ts": "export const answer = 45;\n"})
    finish_run(sim, add_run(sim, REPO, after, head_branch="feature/preview"), artifacts={"worker": build_artifact(45)})
    await demo.deliver("pull_request", events.pull_request_synchronize(sim, REPO, PREVIEW_PR, before, sender="dev",
                                                                       installation_id=INSTALLATION_ID))
    run = await demo.follow_check_run("preview", after)
    live = await demo.fetch_live(url) if url else None
    story.expect(run is not None and run.get("conclusion") == "success" and served_answer() == "export const answer = 45;",
                 f"after a push the same URL serves {served_answer()} (version {live and live.get('version_number')})")
    sim.close_pull_request(REPO, PREVIEW_PR)
    await demo.deliver("pull_request", events.pull_request_closed(sim, REPO, PREVIEW_PR, sender="dev",
                                                                  installation_id=INSTALLATION_ID))

    async def removed() -> bool:
        row = await store.get(REPO, PREVIEW_PR)
        return row is not None and row.state == "removed"
    story.expect(bool(await wait_for(removed, timeout=20)), "the PR closed: its preview is removed")
    gone = record is not None and (CF_ACCOUNT_ID, record.script_name) not in cf.scripts
    status = None
    if url:
        async with demo.http.get(url) as response:
            status = response.status
    story.expect(gone and status == 404, f"the preview Worker is deleted on Cloudflare; its URL answers {status}")
    states = [statuses[-1] if statuses else "-" for _d, statuses in demo.github_deployments(f"preview/pr-{PREVIEW_PR}")]
    story.expect(bool(states) and set(states) == {"inactive"},
                 f"GitHub deployments of preview/pr-{PREVIEW_PR}: {', '.join(states)}")


async def main_async() -> int:
    story = Story()
    with tempfile.TemporaryDirectory(prefix="flareship-demo-") as workdir:
        demo = Demo(Path(workdir), story)
        try:
            await demo.start()
            story.chapter(f"Flareship on {demo.url}; simulated GitHub on {demo.github.url}; "
                          f"simulated Cloudflare on {demo.cloudflare.url}")
            await webhook_intake(demo, story)
            staging_run = await deploy_staging(demo, story)
            await refused_production(demo, story)
            await promote(demo, story, staging_run)
            await push_and_redeploy(demo, story)
            await rollback_staging(demo, story)
            await rest_api(demo, story)
            await pull_request_preview(demo, story)
            writes = len(demo.github.sim.writes)
            story.chapter(f"GitHub saw {len(demo.github.sim.requests)} requests from Flareship ({writes} writes)")
        finally:
            await demo.close()
    elapsed = time.monotonic() - story.started
    if story.failures:
        print(f"\nDEMO FAILED after {elapsed:.1f}s: {len(story.failures)} expectation(s) not met:")
        for failure in story.failures:
            print(f"  - {failure}")
        return 1
    print(f"\nDemo complete in {elapsed:.1f}s; everything it started has stopped.")
    return 0


def run_demo() -> int:
    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(run_demo())
