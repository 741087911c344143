"""`flareship setup` end to end: the local page, the simulated GitHub's "new GitHub App" page, the
redirect back, `.env` written 0600, and `flareship serve` starting from it, in real headless
Chromium (Debian's, driven by Playwright; no browser download). Plus the flow's refusals.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from dotenv import dotenv_values

from bot.settings import DEFAULT_GITHUB_API_URL, DEFAULT_GITHUB_URL
from bot.setup.envfile import quote_value, render_env
from bot.setup.manifest import PACKAGED_APP_YML, load_app_yml
from bot.setup.server import SetupFlow, make_app
from bot.sim.github import GitHubSim, start_github_sim

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PUBLIC_URL = "https://flareship.example.net"


def _require_chromium() -> None:
    """Skip (printing why) when there is no browser; in CI (CI=true) that is a failure instead."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing (pip install -e '.[test]')"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    print(f"skipping the Chromium setup-flow test: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CLOUDFLARE_", "PUBLIC_URL"))}
    env.update({"PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}, **extra)
    return env


async def _start_setup(sim_root: str, api_url: str, cwd: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "setup", *args, cwd=cwd,
        env=_env(cwd, GITHUB_URL=sim_root, GITHUB_API_URL=api_url, PUBLIC_URL=PUBLIC_URL),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    found = re.search(r"Open (http://127\.0\.0\.1:\d+/) in your browser", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"setup did not print its page: {line!r} {(await proc.communicate())[1]!r}")
    return proc, found.group(1)


@pytest.mark.slow
async def test_setup_in_chromium_writes_env_and_serve_starts_from_it(tmp_path):
    _require_chromium()
    from playwright.async_api import async_playwright

    github = await start_github_sim()
    setup, setup_url = await _start_setup(github.root_url, github.url, tmp_path)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = await browser.new_page()
            started = time.monotonic()
            await page.goto(setup_url)
            summary = await page.inner_text("body")
            assert f"{PUBLIC_URL}/webhooks/github" in summary
            assert "pull_request" in await page.inner_text("#events")
            assert "checks" in await page.inner_text("#permissions")
            await page.click("#register")  # POSTs the manifest to the simulated github.com
            await page.wait_for_selector("text=Create GitHub App")
            assert await page.inner_text("#app-name") == "Flareship"
            await page.click("button:has-text('Create GitHub App')")
            await page.wait_for_selector("#install")
            elapsed = time.monotonic() - started
            landed = page.url
            install_link = await page.get_attribute("#install", "href")
            await browser.close()
        out, err = await asyncio.wait_for(setup.communicate(), 30)
    finally:
        if setup.returncode is None:
            setup.kill()
        await github.close()
    print(f"setup flow in Chromium: {elapsed:.2f} s from opening the page to the registered page")
    assert setup.returncode == 0, err.decode()
    assert landed.startswith(setup_url + "callback?code=")

    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dotenv_values(env_file)
    app = github.sim
    assert values["GITHUB_APP_ID"] == str(app.app_id) and values["GITHUB_PRIVATE_KEY"] == app.app_private_key
    assert values["GITHUB_WEBHOOK_SECRET"] and values["GITHUB_CLIENT_ID"] and values["GITHUB_CLIENT_SECRET"]
    assert values["PUBLIC_URL"] == PUBLIC_URL and values["GITHUB_URL"] == github.root_url
    html_url = values["GITHUB_APP_HTML_URL"]
    assert install_link == f"{html_url}/installations/new" and f"{html_url}/installations/new" in out.decode()
    for secret in (values["GITHUB_PRIVATE_KEY"], values["GITHUB_WEBHOOK_SECRET"], values["GITHUB_CLIENT_SECRET"]):
        assert secret not in out.decode() + err.decode()

    # The new App's id and key authenticate as the App; the code was single-use.
    github = await start_github_sim(sim=app)
    try:
        now = int(time.time())
        token = jwt.encode({"iat": now - 30, "exp": now + 300, "iss": values["GITHUB_APP_ID"]},
                           values["GITHUB_PRIVATE_KEY"], algorithm="RS256")
        async with httpx.AsyncClient() as client:
            me = await client.get(f"{github.url}/app", headers={"authorization": f"Bearer {token}"})
            code = landed.split("code=", 1)[1].split("&", 1)[0]
            again = await client.post(f"{github.url}/app-manifests/{code}/conversions")
        assert me.status_code == 200 and me.json()["id"] == int(values["GITHUB_APP_ID"])
        assert again.status_code == 404

        # `flareship serve` starts from the .env alone (the working directory's).
        port = _free_port()
        serve = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path,
            env=_env(tmp_path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            status = None
            async with httpx.AsyncClient() as client:
                for _ in range(150):
                    if serve.returncode is not None:
                        break
                    try:
                        status = (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
            assert status == 200, (await serve.stderr.read()).decode()[-2000:] if serve.returncode else status
        finally:
            if serve.returncode is None:
                serve.terminate()
                await asyncio.wait_for(serve.wait(), 20)
    finally:
        await github.close()


def _flow(tmp_path: Path, api_url: str, **kw) -> SetupFlow:
    return SetupFlow(app_yml=load_app_yml(PACKAGED_APP_YML), state="issued-state", env_path=tmp_path / ".env",
                     force=kw.pop("force", False), public_url=PUBLIC_URL, github_url="http://github.invalid",
                     github_api_url=api_url, defaults=(DEFAULT_GITHUB_URL, DEFAULT_GITHUB_API_URL),
                     announce=lambda line: None, **kw)


async def test_a_foreign_state_is_refused_without_exchanging(tmp_path):
    flow = _flow(tmp_path, "http://127.0.0.1:9")  # nothing listens: an exchange attempt would fail differently
    async with TestClient(TestServer(make_app(flow))) as client:
        page = await client.get("/callback", params={"code": "abc", "state": "someone-else"})
        assert page.status == 400 and "state does not match" in await page.text()
        shown = await client.get("/")
        assert "form-action http://github.invalid" in shown.headers["content-security-policy"]
        assert 'action="http://github.invalid/settings/apps/new?state=issued-state"' in await shown.text()
    assert not (tmp_path / ".env").exists() and not flow.done.is_set()


async def test_an_expired_code_is_refused_by_github_and_nothing_is_written(tmp_path):
    clock = [time.time()]
    github = await start_github_sim(sim=GitHubSim(clock=lambda: clock[0]))
    try:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            flow = _flow(tmp_path, github.url)
            manifest = flow.manifest("http://127.0.0.1:1/callback")
            import json

            shown = await http.post(f"{github.root_url}/organizations/acme/settings/apps/new?state=s1",
                                    data={"manifest": json.dumps(manifest)})
            assert shown.status_code == 200 and "Create GitHub App for acme" in shown.text
            pending = re.search(r'name=pending value="([^"]+)"', shown.text).group(1)
            created = await http.post(f"{github.root_url}/organizations/acme/settings/apps", data={"pending": pending})
            assert created.status_code == 302
            code = re.search(r"code=(\w+)", created.headers["location"]).group(1)
            assert "state=s1" in created.headers["location"]
        clock[0] += 3601
        async with TestClient(TestServer(make_app(flow))) as client:
            page = await client.get("/callback", params={"code": code, "state": "issued-state"})
            assert page.status == 502 and "expires after an hour" in await page.text()
        assert flow.failure and not (tmp_path / ".env").exists()
    finally:
        await github.close()


async def test_an_invalid_manifest_is_refused_by_the_simulated_github():
    github = await start_github_sim()
    try:
        async with httpx.AsyncClient() as http:
            page = await http.post(f"{github.root_url}/settings/apps/new", data={"manifest": '{"name": "x"}'})
        assert page.status_code == 422 and "url is required" in page.text
    finally:
        await github.close()


async def test_setup_never_overwrites_env_without_force(tmp_path):
    (tmp_path / ".env").write_text("KEEP=1\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "setup", cwd=tmp_path, env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and "exists already" in err.decode() and "--force" in err.decode()
    assert (tmp_path / ".env").read_text() == "KEEP=1\n"


def test_env_values_read_back_exactly(tmp_path):
    tricky = 'a"b\\c\nd $HOME'
    (tmp_path / "x.env").write_text(f"V={quote_value(tricky)}\n")
    assert dotenv_values(tmp_path / "x.env")["V"] == tricky
    text = render_env({"id": 5, "slug": "s", "html_url": "https://g/apps/s", "client_id": "c", "client_secret": "cs",
                       "webhook_secret": None, "pem": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"},
                      public_url=PUBLIC_URL, github_url=DEFAULT_GITHUB_URL, github_api_url=DEFAULT_GITHUB_API_URL,
                      defaults=(DEFAULT_GITHUB_URL, DEFAULT_GITHUB_API_URL))
    (tmp_path / ".env").write_text(text)
    values = dotenv_values(tmp_path / ".env")
    assert values["GITHUB_PRIVATE_KEY"].endswith("-----END KEY-----\n") and "GITHUB_WEBHOOK_SECRET" not in values
    assert "GITHUB_URL" not in values  # defaults are not written


async def test_organisation_app_on_github_enterprise_server(tmp_path):
    """`--org` posts to the organisation's page; the code goes to GHES's `/api/v3` API."""
    import html as html_module
    import json

    github = await start_github_sim(prefix="/api/v3")
    setup, setup_url = await _start_setup(github.root_url, github.url, tmp_path, "--org", "acme")
    try:
        async with httpx.AsyncClient() as http:
            page = (await http.get(setup_url)).text
            action = html_module.unescape(re.search(r'<form method=post action="([^"]+)"', page).group(1))
            assert action.startswith(f"{github.root_url}/organizations/acme/settings/apps/new?state=")
            manifest = html_module.unescape(re.search(r'name=manifest value="([^"]+)"', page).group(1))
            assert json.loads(manifest)["redirect_url"] == setup_url + "callback"
            shown = await http.post(action, data={"manifest": manifest})
            pending = re.search(r'name=pending value="([^"]+)"', shown.text).group(1)
            landed = await http.post(f"{github.root_url}/organizations/acme/settings/apps", data={"pending": pending},
                                     follow_redirects=True)
            assert landed.status_code == 200 and "Flareship is registered" in landed.text
        _, err = await asyncio.wait_for(setup.communicate(), 30)
    finally:
        if setup.returncode is None:
            setup.kill()
        await github.close()
    assert setup.returncode == 0, err.decode()
    values = dotenv_values(tmp_path / ".env")
    assert values["GITHUB_API_URL"] == github.url and values["GITHUB_APP_ID"] == str(github.sim.app_id)
    assert github.sim.calls("POST", "/app-manifests/*/conversions", status=201)  # logged without the prefix
