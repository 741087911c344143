"""A dispatcher process holding claims is SIGKILLed; its claims are taken back within seconds of
its heartbeat going stale (not after the 150 s lease of old), by its restarted successor (one
replica) or by a replica running all along (two), and run before the later deliveries of their
repository while other repositories go on.

Run as `python -m tests.webhooks.test_dispatcher_crash --child ...` it is the doomed process: a
dispatcher whose handlers never return, so every claim it makes stays in hand until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gidgethub import routing

from bot.dispatcher import Dispatcher
from bot.store.db import Database
from bot.store.deliveries import DeliveryStore
from bot.store.dispatchers import DispatcherRegistry
from tests.webhooks.dispatching import about, services_for, store

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Recovery:
    """What the survivor saw, in seconds after the SIGKILL."""

    first_taken_back: float  # the first of the dead process's deliveries started again
    all_done: float
    other_repository: float  # a delivery of a repository the dead one held nothing of
    order: list[str] = field(default_factory=list)  # the survivor's starts


def _spawn(db_url: str, heartbeat: float, owner_timeout: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.webhooks.test_dispatcher_crash", "--child", "--db", db_url,
           "--heartbeat", str(heartbeat), "--owner-timeout", str(owner_timeout)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def _wait_for_lines(proc: subprocess.Popen[str], wanted: set[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    assert proc.stdout is not None
    missing = set(wanted)
    while missing:
        line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline),
                                      timeout=max(0.1, deadline - loop.time()))
        if not line:
            raise AssertionError(f"child exited (code {proc.wait()}) before printing {sorted(missing)}")
        missing.discard(line.split(" ", 1)[0] if line.startswith("STARTED") else line.strip())


async def crash_and_recover(database: Database, db_url: str, *, replicas: int, heartbeat: float,
                            owner_timeout: float) -> Recovery:
    """Kill a dispatcher holding a1 (running), a2 (queued) and b1; store a3 and c1; see them run."""
    started: dict[str, float] = {}
    router = routing.Router()

    @router.register("push")
    async def record(event, ctx) -> None:
        started.setdefault(event.delivery_id, time.monotonic())

    def survivor() -> Dispatcher:
        return Dispatcher(services_for(database), router, poll_interval=0.05, heartbeat_interval=heartbeat,
                          owner_timeout=owner_timeout)

    live: Dispatcher | None = None
    doomed = _spawn(db_url, heartbeat, owner_timeout)
    try:
        await _wait_for_lines(doomed, {"STARTED"}, timeout=60)
        await store(database, about("a1", "acme/app"), about("a2", "acme/app"), about("b1", "acme/other"))
        await _wait_for_lines(doomed, {"HOLDING a1", "HOLDING b1"}, timeout=30)
        if replicas == 2:
            live = survivor()
            await live.start()
        doomed.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    try:
        await store(database, about("a3", "acme/app"), about("c1", "acme/new"))
        if live is None:  # the only replica, restarted
            live = survivor()
            await live.start()
        live.wake()
        deadline = killed + 150
        while live.processed < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert live.processed == 5, (live.processed, started)
        all_done = time.monotonic() - killed
    finally:
        if live is not None:
            await live.stop()
    order = sorted(started, key=started.__getitem__)
    return Recovery(started["a1"] - killed, all_done, started["c1"] - killed, order)


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 2])
async def test_claims_of_a_sigkilled_dispatcher_are_taken_back_within_seconds(database, database_url, replicas):
    if replicas == 2 and database.dialect == "sqlite":
        pytest.skip("replicas share PostgreSQL; a SQLite file belongs to one process")
    heartbeat, owner_timeout = 0.25, 2.0
    recovery = await crash_and_recover(database, database_url, replicas=replicas, heartbeat=heartbeat,
                                       owner_timeout=owner_timeout)
    app = [d for d in recovery.order if d.startswith("a")]
    assert app == ["a1", "a2", "a3"], recovery  # the taken-back ones first, in GitHub's order
    if database.dialect == "postgresql":
        # not while the dead one might still have been beating, and soon after it stopped
        assert owner_timeout - heartbeat - 0.1 <= recovery.first_taken_back <= owner_timeout + 4.0, recovery
        assert recovery.other_repository < recovery.first_taken_back, recovery  # acme/new did not wait
    else:  # a restarted SQLite process owns the file: every claim in it is a dead one
        assert recovery.first_taken_back <= 4.0, recovery
    assert [(await DeliveryStore(database).get(d)).attempts for d in ("a1", "a2", "b1", "a3")] == [2, 2, 2, 1]
    assert await DispatcherRegistry(database).registered() == []  # the dead one struck off, the survivor left


async def _child(args: argparse.Namespace) -> None:
    database = Database(args.db)
    router = routing.Router()

    @router.register("push")
    async def hold(event, ctx) -> None:
        print(f"HOLDING {event.delivery_id}", flush=True)
        await asyncio.sleep(3600)

    dispatcher = Dispatcher(services_for(database), router, poll_interval=0.05,
                            heartbeat_interval=args.heartbeat, owner_timeout=args.owner_timeout)
    await dispatcher.start()
    print(f"STARTED {dispatcher.owner}", flush=True)
    await asyncio.sleep(3600)  # until SIGKILL


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--heartbeat", type=float, required=True)
    parser.add_argument("--owner-timeout", type=float, required=True)
    asyncio.run(_child(parser.parse_args()))
