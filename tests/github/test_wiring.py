"""The composition root builds the GitHub App on the shared session when it is configured."""

from __future__ import annotations

from bot.github.app import GitHubApp, GitHubUnavailable
from bot.services import SERVICES
from tests.plugins.github_sim import INSTALLATION_ID, REPOSITORY, seed_repo


async def test_app_builds_the_github_app_from_settings(make_flareship_client, github_sim):
    seed_repo(github_sim)
    client = await make_flareship_client(github_api_url=github_sim.url, github_app_id=str(github_sim.app_id),
                                         github_private_key=github_sim.app_private_key, github_write_interval=0)
    github = client.app[SERVICES].github
    assert isinstance(github, GitHubApp)
    assert github.session is client.app[SERVICES].http
    assert github.base_url == github_sim.url and github.write_interval == 0
    gh = await github.client(INSTALLATION_ID)
    assert (await gh.getitem(f"/repos/{REPOSITORY}"))["full_name"] == REPOSITORY


async def test_no_github_app_without_credentials(make_flareship_client):
    client = await make_flareship_client(github_app_id=None, github_private_key=None)
    github = client.app[SERVICES].github
    assert isinstance(github, GitHubUnavailable) and not github.configured
