"""The Cloudflare request budget shared by replicas on PostgreSQL (bot/store/cloudflare_budget.py)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
import sqlalchemy as sa

from bot.cloudflare.budget import RequestBudget, SharedRequestBudget
from bot.cloudflare.errors import BudgetExhausted
from bot.store.cloudflare_budget import SharedWindow, cloudflare_budget, wait_for_slot
from bot.store.db import Database

TOKEN = "cf-token-never-stored-0123456789"


def test_wait_for_slot_counts_a_slice_for_a_whole_window_after_it_ends() -> None:
    # limit 3, window 1000 ms, slices of 50 ms: (0: 2 requests), (100: 1 request) at now=400
    assert wait_for_slot([(0, 1), (100, 1)], 400, 3, 1000, 50) == 0
    assert wait_for_slot([(0, 2), (100, 1)], 400, 3, 1000, 50) == pytest.approx(0.65)  # 0 + 50 + 1000 - 400
    assert wait_for_slot([(0, 1), (100, 2)], 400, 3, 1000, 50) == pytest.approx(0.65)  # one freed is enough
    assert wait_for_slot([(0, 3), (100, 3)], 400, 3, 1000, 50) == pytest.approx(0.75)  # both must go


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
async def test_replicas_share_one_window_and_never_store_the_token(database_url) -> None:
    key = hashlib.sha256(TOKEN.encode()).hexdigest()
    # Two "replicas": two engines (connection pools) on one database, each with its own budget object.
    first, second = Database(database_url), Database(database_url)
    try:
        budgets = [SharedRequestBudget(SharedWindow(db, key), limit=10, window=1.0, max_wait=5) for db in (first, second)]
        sent: list[float] = []

        async def send(budget: SharedRequestBudget) -> None:
            await budget.acquire()
            sent.append(time.monotonic())

        started = time.monotonic()
        await asyncio.gather(*(send(budgets[i % 2]) for i in range(30)))
        elapsed = time.monotonic() - started
        assert len(sent) == 30 and elapsed >= 2.0  # 10 per window: the third ten waited two windows
        sent.sort()
        # Timestamps are taken when each caller resumes, which a busy loop delays: allow 0.3 s of it
        # (unshared, the two budgets would let 20 through at once).
        for i in range(len(sent) - 10):
            assert sent[i + 10] - sent[i] >= 0.7, "more than 10 requests within one window"
        assert budgets[0].total_acquired + budgets[1].total_acquired == 30
        assert 0 < budgets[0].total_acquired < 30  # both took slots from the same window
        assert 0 < await SharedWindow(first, key).in_window(1.0) <= 10

        # Metrics' headroom sees every replica's requests (as the last request found them).
        other = hashlib.sha256(b"metrics-token").hexdigest()
        a, b = (SharedRequestBudget(SharedWindow(db, other), limit=10, window=30.0) for db in (first, second))
        for _ in range(3):
            await a.acquire()
        await b.acquire()
        assert (a.in_window(), b.in_window()) == (3, 4)

        async with first.connect() as conn:
            rows = (await conn.execute(sa.select(cloudflare_budget))).all()
            dump = " ".join(str(tuple(r)) for r in rows)
        assert rows and {r.token_hash for r in rows} == {key, other} and TOKEN not in dump
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
async def test_a_wait_longer_than_max_wait_fails_at_once(database_url) -> None:
    database = Database(database_url)
    try:
        window = SharedWindow(database, hashlib.sha256(b"another-token").hexdigest())
        budget = SharedRequestBudget(window, limit=2, window=30.0, max_wait=1.0)
        await budget.acquire()
        await budget.acquire()
        started = time.monotonic()
        with pytest.raises(BudgetExhausted):
            await budget.acquire()
        assert time.monotonic() - started < 1.0
        # Another token's window is its own.
        other = SharedRequestBudget(SharedWindow(database, hashlib.sha256(b"third").hexdigest()), limit=2, window=30.0)
        await other.acquire()
    finally:
        await database.close()


async def test_sqlite_keeps_the_in_process_budget(tmp_path) -> None:
    from bot.app import cloudflare_clients
    from bot.settings import Settings

    database = Database(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        with pytest.raises(ValueError):
            SharedWindow(database, "0" * 64)
        settings = Settings(cloudflare_budget_limit=7, cloudflare_budget_window=3.0, environment_overrides={})
        clients = cloudflare_clients(settings, database)
        budget = clients.budget_for(TOKEN)
        assert type(budget) is RequestBudget and budget.limit == 7 and budget.window == 3.0
        await clients.aclose()
    finally:
        await database.close()


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
async def test_postgresql_shares_the_budget_sized_by_the_settings(database_url) -> None:
    from bot.app import cloudflare_clients
    from bot.settings import Settings

    database = Database(database_url)
    try:
        settings = Settings(cloudflare_budget_limit=7, cloudflare_budget_window=3.0, environment_overrides={})
        clients = cloudflare_clients(settings, database)
        budget = clients.budget_for(TOKEN)
        assert isinstance(budget, SharedRequestBudget) and budget.limit == 7 and budget.window == 3.0
        assert isinstance(budget.slots, SharedWindow)
        assert budget.slots.token_hash == hashlib.sha256(TOKEN.encode()).hexdigest()
        await clients.aclose()
    finally:
        await database.close()
