"""GET /deployments/{id}: the live page behind the check run's Details link (signed, read-only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from bot.engine.model import Deployment, DeploymentError, LogLine
from bot.services import SERVICES
from handlers.pages.deployment import render_deployment_page
from tests.api.conftest import app_config, wait_final

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def _deployed(api) -> str:
    token = await api.token("read", "deploy:staging")
    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "config": app_config(api.sim_env)})
    assert resp.status == 200, body
    deployment_id = body["data"]["deploymentId"]
    resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": deployment_id, "environment": "staging"})
    assert resp.status == 200, body
    await wait_final(api, token, deployment_id)
    return deployment_id


def _path(api, deployment_id: str) -> str:
    link = urlsplit(api.app[SERVICES].details_links.url(deployment_id))
    return f"{link.path}?{link.query}"


async def test_the_signed_link_opens_the_page_without_an_api_token(deploy_api):
    deployment_id = await _deployed(deploy_api)
    resp = await deploy_api.client.get(_path(deploy_api, deployment_id))
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert "Deploy shop to staging: completed" in html
    assert html.count("<td>completed</td>") == 8 and deployment_id in html
    assert 'http-equiv="refresh"' not in html  # finished: nothing left to watch
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["Cache-Control"] == "no-store"


async def test_no_token_a_wrong_one_or_an_unknown_deployment_get_the_error_envelope(deploy_api):
    deployment_id = await _deployed(deploy_api)
    links = deploy_api.app[SERVICES].details_links
    for path in (f"/deployments/{deployment_id}", f"/deployments/{deployment_id}?token=1.x",
                 f"/deployments/{deployment_id}?token={links.token('dep_other', 4102444800)}"):
        resp, body = await deploy_api.call("GET", path)
        assert resp.status == 401, (path, body)
        assert body["error"]["code"] == "AUTH_007"
    resp, body = await deploy_api.call("GET", _path(deploy_api, "dep_missing"))
    assert resp.status == 404 and body["error"]["code"] == "SYS_005"


def _deployment(**changes) -> Deployment:
    values = dict(id="dep_1", environment="staging", app_name="shop", script_name="shop-staging", target="workers",
                  repository="acme/app", sha="0123456789abcdef", pull_request=7, actor="octocat", trigger="comment",
                  created_at=NOW - timedelta(seconds=30), started_at=NOW - timedelta(seconds=20))
    return Deployment(**{**values, **changes})


def test_a_running_deployment_reloads_itself_and_shows_where_it_is():
    deployment = _deployment(status="in_progress")
    deployment.steps[0].status, deployment.steps[0].started_at = "completed", NOW - timedelta(seconds=20)
    deployment.steps[0].ended_at = NOW - timedelta(seconds=18)
    deployment.steps[1].status, deployment.steps[1].started_at = "running", NOW - timedelta(seconds=18)
    html = render_deployment_page(deployment, [], now=NOW)
    assert '<meta http-equiv="refresh" content="3">' in html
    assert "<td>running</td><td>18.0 s</td>" in html and "<td>completed</td><td>2.0 s</td>" in html
    assert "#7" in html and "0123456789ab" in html and "octocat (comment)" in html
    assert "(nothing logged yet)" in html


def test_everything_shown_is_escaped():
    hostile = "<script>alert(1)</script>"
    deployment = _deployment(status="failed", app_name=hostile, ended_at=NOW,
                             error=DeploymentError(code="DEPLOY_008", message=hostile, step="Uploading Worker version"),
                             urls={"staging": 'https://x.example/"><script>'})
    deployment.steps[5].status, deployment.steps[5].error = "failed", hostile
    logs = [LogLine(id=1, timestamp=NOW, level="error", message=hostile, step="Uploading Worker version")]
    html = render_deployment_page(deployment, logs, now=NOW)
    assert "<script>" not in html
    assert html.count("&lt;script&gt;") >= 4
    assert "DEPLOY_008" in html and "ERROR [Uploading Worker version]" in html
