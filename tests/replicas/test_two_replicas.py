"""Two `flareship serve` processes on one PostgreSQL, one of them SIGKILLed mid-deployment.

The simulated GitHub and Cloudflare run in this test's process; the replicas are real
subprocesses started from the environment alone (as an operator runs them), with test-sized
leases, heartbeat timeout and Cloudflare budget. Webhooks alternate between the replicas; while a
deployment's Worker upload is held at the simulated Cloudflare (the work done, the answer not yet
sent: the worst moment, as in tests/engine/test_engine_crash.py) the replica running it is killed.
The survivor must take the deployment over once its lease expires and finish it (or fail it
cleanly), and afterwards: every acknowledged delivery was handled exactly once, each deployment
has one check run and one GitHub deployment, and the replicas together never sent more than the
budget to Cloudflare in any window.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from bot.sim.cloudflare import CloudflareSimServer
from bot.sim.cloudflare.app import make_app
from bot.sim.cloudflare.state import CloudflareSim
from bot.sim.github import GitHubSimServer, events
from bot.store.db import Database
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, CF_SUBDOMAIN, CF_TOKEN
from tests.plugins.database import PostgresServer, pg_admin
from tests.plugins.github_sim import seed_repo

ROOT = Path(__file__).resolve().parents[2]
SECRET = "replica-webhook-secret-5e1f"
INSTALLATION_ID = 4242
REPOS = ("acme/widgets", "acme/gadgets")
PR = 7
BASE_SHA = "0" * 39 + "1"
HEAD_SHA = "c0ffee" + "0" * 34
#: Test-sized operating settings (bot/settings.py): a dead replica's lease and claims are taken
#: over within seconds, and the Cloudflare budget is small enough to bind during the test. The
#: lease outlasts the event-loop stalls of a loaded 2-core CI machine: at 2 s, a live replica's
#: heartbeat once came late, the other replica took the deployment over (correctly: the lease
#: had expired), and the test killed the wrong one.
LEASE_SECONDS = 6.0
OWNER_TIMEOUT = 2.0
BUDGET_LIMIT = 8
BUDGET_WINDOW = 3.0
#: Requests reach the simulator a little after the budget counted them, by how long the sending
#: replica's and this process's event loops were busy (both stall on a loaded machine): the check
#: at the simulator allows that much skew. Unshared, two budgets let 2 x BUDGET_LIMIT through at once.
ARRIVAL_SKEW = 0.6
#: A deployment that ended on the replica just before it was killed, its check run not yet written
#: (the reporter writes once a second), is reported by the survivor's next recovery pass.
REPORT_RECOVERY = 3.0


def _config(name: str) -> str:
    return (f"app:\n  name: {name}\n  main: dist/index.js\n  compatibility_date: \"2025-09-01\"\n"
            "environments:\n  staging:\n    auto_deploy: true\n    health_check: {path: /, timeout_seconds: 5}\n")


WORKER = 'export default { async fetch() { return new Response("ok"); } };\n'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sent:
    """One Cloudflare API request as the simulator received it."""

    at: float
    method: str
    path: str
    budgeted: bool  # sent by a Cloudflare client (httpx), not a health probe (aiohttp; not budgeted)


async def start_recording_cloudflare_sim() -> tuple[CloudflareSimServer, list[Sent]]:
    """The simulated Cloudflare (as `start_cloudflare_sim`) with every API call's arrival time recorded."""
    sim = CloudflareSim()
    app = make_app(sim)
    sent: list[Sent] = []

    @web.middleware
    async def record(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.headers.get("Authorization") == f"Bearer {CF_TOKEN}":
            agent = request.headers.get("User-Agent", "")
            sent.append(Sent(time.monotonic(), request.method, request.path, agent.startswith("python-httpx")))
        return await handler(request)

    app.middlewares.insert(0, record)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=False, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sim.registry_host = f"127.0.0.1:{port}"
    server = CloudflareSimServer(sim, runner, "127.0.0.1", port)
    server.seed_account(CF_ACCOUNT_ID, CF_TOKEN, subdomain=CF_SUBDOMAIN)
    return server, sent


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def spawn_replica(name: str, workdir: Path, env: dict[str, str]) -> Replica:
    """`flareship serve` configured by its environment only (no `.env` in its working directory)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    run_dir = workdir / name
    run_dir.mkdir()
    log = run_dir / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=run_dir, env={**env, "PUBLIC_URL": url}, stdout=out, stderr=subprocess.STDOUT)
    return Replica(name, url, process, log)


async def wait_ready(http: aiohttp.ClientSession, replica: Replica, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise AssertionError(f"{replica.name} exited {replica.process.returncode}:\n{replica.tail()}")
        try:
            async with http.get(replica.url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{replica.name} not ready within {timeout}s:\n{replica.tail()}")


async def until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float,
                describe: Callable[[], Awaitable[str]] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = await describe() if describe else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def replica_database(postgres_server) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database: the replicas migrate it themselves (together)."""
    if callable(postgres_server):
        postgres_server()  # skips, or fails under FLARESHIP_REQUIRE_POSTGRES=1
    server: PostgresServer = postgres_server
    name = f"replicas_{os.getpid()}_{time.monotonic_ns()}"
    await pg_admin(server, f'CREATE DATABASE "{name}" TEMPLATE template0')
    yield server.url(name).replace("postgresql+asyncpg://", "postgresql://")


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_replicas_share_work_and_budget_and_survive_a_sigkill(
        replica_database: str, github_sim: GitHubSimServer, tmp_path: Path) -> None:
    cloudflare, sent = await start_recording_cloudflare_sim()
    sim = github_sim.sim
    for repo in REPOS:
        files: dict[str, bytes | str] = {".github/flareship.yml": _config(repo.split("/")[1]), "dist/index.js": WORKER}
        seed_repo(github_sim, repo, installation_id=INSTALLATION_ID, sha=BASE_SHA, files=files)
        sim.add_pull_request(repo, PR, head_sha=HEAD_SHA)
        for path, content in files.items():
            sim.set_file(repo, HEAD_SHA, path, content)
        sim.add_collaborator(repo, "dev", "write")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
        "GITHUB_APP_ID": str(github_sim.app_id), "GITHUB_PRIVATE_KEY": github_sim.app_private_key,
        "GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_API_URL": github_sim.url, "GITHUB_WRITE_INTERVAL": "0",
        "CLOUDFLARE_API_URL": cloudflare.url, "CLOUDFLARE_API_TOKEN": CF_TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": CF_ACCOUNT_ID, "CONTAINER_REGISTRY_URL": cloudflare.registry_url,
        "WORKERS_URL_TEMPLATE": cloudflare.workers_url_template, "DATABASE_URL": replica_database,
        "LOG_LEVEL": "INFO", "DEPLOYMENT_LEASE_SECONDS": str(LEASE_SECONDS),
        "DISPATCHER_OWNER_TIMEOUT": str(OWNER_TIMEOUT), "CLOUDFLARE_BUDGET_LIMIT": str(BUDGET_LIMIT),
        "CLOUDFLARE_BUDGET_WINDOW": str(BUDGET_WINDOW), "GITHUB_REPORT_RECOVERY_SECONDS": str(REPORT_RECOVERY),
    }
    # The widgets Worker's upload is done and then its answer held: the replica running it dies there.
    held = cloudflare.sim.inject_fault("PUT", "/accounts/*/workers/scripts/widgets-staging", delay=60,
                                       after=True, times=1)
    replicas = [spawn_replica(name, tmp_path, env) for name in ("replica-a", "replica-b")]
    database = Database(replica_database)
    http = aiohttp.ClientSession()
    acknowledged: list[str] = []
    deploy_comments: dict[str, int] = {}

    async def deliver(replica: Replica, repo: str, body: str) -> None:
        comment = sim.add_comment(repo, PR, body, user="dev")
        if body.startswith("/deploy"):
            deploy_comments[repo] = comment.id
        payload = events.issue_comment_created(sim, repo, PR, comment.id, installation_id=INSTALLATION_ID)
        delivery = await github_sim.deliver("issue_comment", payload, replica.url + "/webhooks/github", SECRET)
        assert delivery.status == 202, (replica.name, delivery.status, delivery.body)
        acknowledged.append(delivery.delivery_id)

    async def rows(statement: str) -> list[sa.Row]:
        async with database.connect() as conn:
            return list((await conn.execute(sa.text(statement))).all())

    async def all_handled() -> bool:
        found = await rows("SELECT delivery_id, status FROM webhook_deliveries")
        return len(found) == len(acknowledged) and all(r.status == "done" for r in found)

    try:
        started = time.monotonic()
        for replica in replicas:
            await wait_ready(http, replica)
        # Webhooks alternate between the replicas.
        await deliver(replicas[0], REPOS[0], "Looks good")
        await deliver(replicas[1], REPOS[0], "/deploy staging")
        await deliver(replicas[0], REPOS[1], "/deploy staging")
        await deliver(replicas[1], REPOS[1], "Nice one")
        async def upload_held() -> bool:
            return held.hits > 0

        await until(upload_held, "the widgets upload to reach Cloudflare", 30)
        await until(all_handled, "every delivery so far to be handled", 15)
        leases = await rows("SELECT target, holder, deployment_id FROM leases")
        holder = next(r.holder for r in leases if "widgets" in r.target)
        pid = int(holder.split(":")[1])
        victim = next(r for r in replicas if r.process.pid == pid)
        survivor = next(r for r in replicas if r is not victim)
        lost = [r.name for r in replicas if "lost while running" in r.log.read_text(errors="replace")]
        assert not lost, f"{lost} lost a lease to a stall longer than {LEASE_SECONDS}s before the kill"
        os.kill(pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        killed_at = time.monotonic()
        # The survivor keeps acknowledging; it takes the deployment over once the lease expires.
        await deliver(survivor, REPOS[0], "Thanks")
        await deliver(survivor, REPOS[1], "Thanks too")

        async def finished() -> bool:
            final = await rows("SELECT status FROM deployments")
            runs = [r for repo in REPOS for r in sim.repo(repo).check_runs.values()]
            return (len(final) == 2 and all(r.status in ("completed", "failed", "rolled_back") for r in final)
                    and len(runs) == 2 and all(r["status"] == "completed" for r in runs)
                    and not await rows("SELECT target FROM leases") and await all_handled())

        async def where_things_stand() -> str:
            final = await rows("SELECT id, repository, status FROM deployments")
            runs = [(repo, r["name"], r["status"], r.get("conclusion")) for repo in REPOS
                    for r in sim.repo(repo).check_runs.values()]
            leases = await rows("SELECT target, holder, expires_at FROM leases")
            deliveries = await rows("SELECT delivery_id, event, status, attempts FROM webhook_deliveries")
            return (f"\ndeployments: {final}\ncheck runs: {runs}\nleases: {leases}\n"
                    f"deliveries: {deliveries} (acknowledged {len(acknowledged)})")

        await until(finished, "both deployments to end on the survivor", 60, where_things_stand)
        print(f"\nreplicas ready, deployed, one killed and taken over in {time.monotonic() - started:.1f}s")

        # Every acknowledged delivery was handled once: stored once, claimed once, done.
        stored = await rows("SELECT delivery_id, status, attempts FROM webhook_deliveries")
        assert sorted(r.delivery_id for r in stored) == sorted(acknowledged)
        assert {(r.status, r.attempts) for r in stored} == {("done", 1)}, stored
        # One deployment per /deploy comment, one check run and one GitHub deployment each.
        deployments = await rows("SELECT id, repository, status FROM deployments")
        assert sorted(d.repository for d in deployments) == sorted(REPOS)
        for d in deployments:
            state = sim.repo(d.repository)
            runs = [r for r in state.check_runs.values() if r["name"] == "Deploy to staging"]
            assert len(runs) == 1 and runs[0]["external_id"] == d.id, runs
            expected = "success" if d.status == "completed" else "failure"
            assert runs[0]["conclusion"] == expected, (d, runs[0]["output"])
            github_deployments = [g for g in state.deployments.values() if g["environment"] == "staging"]
            assert len(github_deployments) == 1
            states = [s["state"] for s in state.deployment_statuses.get(github_deployments[0]["id"], [])]
            assert states[-1] == expected or (expected == "failure" and states[-1] == "error"), states
            reactions = [c for c, _user, _id in state.comments[deploy_comments[d.repository]].reactions]
            assert reactions.count("eyes") == 1, reactions
        widgets = next(d for d in deployments if d.repository == REPOS[0])
        assert widgets.status == "completed"  # the survivor re-ran the held upload and finished
        # ...once the dead replica's lease had expired (it was renewed every third of its length).
        resumed = [s.at - killed_at for s in sent if "widgets-staging" in s.path and s.at > killed_at]
        assert resumed and resumed[0] >= LEASE_SECONDS * 2 / 3 - 0.1, resumed

        # The replicas together kept to one budget at Cloudflare: never more than BUDGET_LIMIT
        # requests in any window, though the budget bound (the test sent several windows' worth).
        budgeted = sorted(s.at for s in sent if s.budgeted)
        assert len(budgeted) > 2 * BUDGET_LIMIT, len(budgeted)
        for first, later in zip(budgeted, budgeted[BUDGET_LIMIT:], strict=False):
            assert later - first >= BUDGET_WINDOW - ARRIVAL_SKEW, "more than the budget within one window"
        # Only the health probes (one per replica per 30 s, bot/health.py) go around the budget.
        assert all(s.path.endswith("/user/tokens/verify") for s in sent if not s.budgeted)
        assert not any(status == 429 for _m, _p, status in cloudflare.sim.requests)
    except BaseException:
        for replica in replicas:
            print(f"--- {replica.name} (pid {replica.process.pid}) ---\n{replica.tail()}")
        raise
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                replica.process.kill()
        await http.close()
        await database.close()
        await cloudflare.close()
