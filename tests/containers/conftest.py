"""Fixtures of the container tests: the engine tests' simulated Cloudflare and source registry."""

from __future__ import annotations

import pytest

from tests.engine.harness import start_sim_env


@pytest.fixture
async def sim_env():
    env = await start_sim_env()
    try:
        yield env
    finally:
        await env.close()
