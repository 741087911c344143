"""A real engine process is SIGKILLed during each of the 8 steps, then a new one takes over.

The deployment must end completed (or failed / rolled back) with its lease released, and no
Cloudflare object may be created twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.engine import STEP_NAMES, DeployOptions, PrepareRequest
from bot.store.db import Database
from tests.engine.harness import ACCOUNT_ID, inline_app, make_engine

ROOT = Path(__file__).resolve().parents[2]


def _spawn(sim_env, db_url: str, deployment_id: str, hold: str | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.engine.crash_child", "--db", db_url, "--api", sim_env.api_url,
           "--registry", sim_env.base, "--template", sim_env.workers_url_template, "--deployment", deployment_id,
           "--lease", "1.0"]
    if hold:
        cmd += ["--hold", hold]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def _wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline),
                                      timeout=max(0.1, deadline - loop.time()))
        if not line:
            raise AssertionError(f"child exited (code {proc.wait()}) before printing {prefix!r}")
        if line.startswith(prefix):
            return line.strip()


@pytest.mark.slow
@pytest.mark.parametrize("step", STEP_NAMES)
async def test_sigkill_during_step_then_resume(sim_env, tmp_path, step):
    sim_env.sim.validate_requests = False  # request shapes are checked by the other engine tests
    db_url = f"sqlite:///{tmp_path}/crash.db"
    database = Database(db_url)
    await database.migrate()
    engine, clients = make_engine(sim_env.settings(db_url), database)  # not started: prepares only
    try:
        d = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        await engine.deploy(d.id, DeployOptions())
        first = _spawn(sim_env, db_url, d.id, hold=step)
        try:
            await _wait_for_line(first, f"HOLDING {step}", timeout=30)
            running = await engine.get(d.id)
            assert running.status == "in_progress" and running.step(step).status == "running"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        lease = await engine.store.get_lease("shop", "staging")
        assert lease is not None  # the dead process left its lease behind...
        second = _spawn(sim_env, db_url, d.id, hold=None)
        try:
            final = await _wait_for_line(second, "FINAL", timeout=60)
            assert second.wait(timeout=10) == 0
        finally:
            if second.poll() is None:
                second.kill()
        done = await engine.get(d.id)
        assert final == f"FINAL {done.status}"
        assert done.status == "completed", (done.error, [(s.name, s.status) for s in done.steps])
        assert done.step(step).attempt == 2  # ...which expired, and the step was re-run once
        assert await engine.store.get_lease("shop", "staging") is None  # lease released
        sim = sim_env.sim
        assert sim.creates["application"] <= 1
        assert len([n for n in sim.namespaces.values() if n.script == "shop-staging"]) == 1
        assert sim.script(ACCOUNT_ID, "shop-staging").live_version_id() == done.release.version_id
    finally:
        await clients.aclose()
        await database.close()


@pytest.mark.slow
@pytest.mark.parametrize("method,path", [
    ("PUT", "/accounts/*/workers/scripts/*"),
    ("POST", "/accounts/*/containers/applications"),
])
async def test_sigkill_while_a_create_is_in_flight(sim_env, tmp_path, method, path):
    """Cloudflare did the work but the process died before reading the answer: no duplicate."""
    sim_env.sim.validate_requests = False
    db_url = f"sqlite:///{tmp_path}/crash.db"
    database = Database(db_url)
    await database.migrate()
    engine, clients = make_engine(sim_env.settings(db_url), database)
    try:
        d = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        await engine.deploy(d.id, DeployOptions())
        injected = sim_env.sim.inject_fault(method, path, delay=30, after=True, times=1)
        first = _spawn(sim_env, db_url, d.id, hold=None)
        try:
            for _ in range(3000):
                if injected.hits:
                    break
                await asyncio.sleep(0.01)
            assert injected.hits == 1
            await asyncio.sleep(0.1)  # the simulator finishes the work, then holds the answer
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        second = _spawn(sim_env, db_url, d.id, hold=None)
        try:
            await _wait_for_line(second, "FINAL", timeout=60)
            assert second.wait(timeout=10) == 0
        finally:
            if second.poll() is None:
                second.kill()
        done = await engine.get(d.id)
        assert done.status == "completed", done.error
        assert done.step("Deploying Durable Objects").attempt == 2
        assert sim_env.sim.creates["application"] == 1
        assert sim_env.sim.creates["namespace"] == 1
        assert await engine.store.get_lease("shop", "staging") is None
    finally:
        await clients.aclose()
        await database.close()
