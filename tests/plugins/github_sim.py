"""Fixtures for the GitHub area: a running simulated GitHub and a GitHubApp talking to it.

`github_sim` is the running server (`.url`, `.sim`, `.deliver`, `.app_id`, `.app_private_key`);
`github_app` is a real `GitHubApp` against it on a real aiohttp session, with write pacing off
and a recording sleep so rate-limit waits are observed, not slept.
"""

from __future__ import annotations

import aiohttp
import pytest

from bot.github.app import GitHubApp
from bot.github.client import RetryPolicy
from bot.sim.github import GitHubSimServer, start_github_sim
from bot.sim.github.state import generate_private_key

#: The installation and repository `seed_repo` creates unless told otherwise.
INSTALLATION_ID = 4242
REPOSITORY = "acme/widgets"
DEFAULT_SHA = "a" * 40


class RecordingSleep:
    """An injectable `sleep` that records each wait and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    @property
    def total(self) -> float:
        return sum(self.calls)


def seed_repo(server: GitHubSimServer, full_name: str = REPOSITORY, *, installation_id: int = INSTALLATION_ID,
              sha: str = DEFAULT_SHA, files: dict[str, bytes | str] | None = None,
              permissions: dict[str, str] | None = None) -> str:
    """An installation covering `full_name`, whose default branch points at `sha` with `files`."""
    sim = server.sim
    owner = full_name.split("/", 1)[0]
    if installation_id not in sim.installations:
        sim.add_installation(installation_id, account=owner, repositories=[], permissions=permissions)
    sim.add_repo(full_name, installation_id=installation_id, head_sha=sha)
    for path, content in (files or {}).items():
        sim.set_file(full_name, sha, path, content)
    return sha


@pytest.fixture(scope="session")
def github_app_key() -> str:
    """One App key pair per test session: key generation is slow, and every key is a secret
    the log redactor has to carry from then on."""
    return generate_private_key()


@pytest.fixture
async def github_sim(github_app_key):
    server = await start_github_sim(private_key=github_app_key)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def github_sim_ghes(github_app_key):
    """The simulated GitHub served under `/api/v3`, like GitHub Enterprise Server."""
    server = await start_github_sim(prefix="/api/v3", private_key=github_app_key)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def github_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def github_session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def make_github_app(session: aiohttp.ClientSession, server: GitHubSimServer, **kwargs) -> GitHubApp:
    kwargs.setdefault("write_interval", 0)
    kwargs.setdefault("policy", RetryPolicy(backoff=0.01))
    return GitHubApp(session, app_id=str(server.app_id), private_key=server.app_private_key,
                     base_url=server.url, **kwargs)


@pytest.fixture
async def github_app(github_sim, github_session, github_sleep) -> GitHubApp:
    """A GitHubApp against `github_sim`, with `seed_repo`'s installation and repository in place."""
    seed_repo(github_sim)
    return make_github_app(github_session, github_sim, sleep=github_sleep)
