"""Fixtures for the engine tests (this directory only)."""

from __future__ import annotations

import pytest

from tests.engine.harness import make_engine, start_sim_env


@pytest.fixture
async def sim_env():
    env = await start_sim_env()
    try:
        yield env
    finally:
        await env.close()


@pytest.fixture
async def engine(sim_env, database):
    settings = sim_env.settings(database.url)
    engine, clients = make_engine(settings, database)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        await clients.aclose()
