"""The simulated GitHub over HTTP: every request is logged, faulted, authenticated, validated
against the OpenAPI subset, rate-counted and ETagged the way GitHub does, then handled.

`start_github_sim()` runs it on loopback (tests, `flareship demo`); `deliver()` sends a signed
webhook to Flareship exactly as GitHub's Hookshot would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt as pyjwt
from aiohttp import web

from bot.github.paths import match_path
from bot.sim.github.actions import ROUTES as ACTIONS_ROUTES
from bot.sim.github.actions import add_pages as add_actions_pages
from bot.sim.github.handlers import ROUTES, Call, Reply, build_tarball, error, not_found
from bot.sim.github.manifest import API_ROUTES as MANIFEST_ROUTES
from bot.sim.github.manifest import add_pages as add_manifest_pages
from bot.sim.github.state import LEVELS, GitHubSim, LoggedRequest
from bot.sim.github.validation import validate_request

log = logging.getLogger(__name__)

SIM = web.AppKey("github_sim", GitHubSim)
PREFIX = web.AppKey("github_sim_prefix", str)
JWT_MAX_LIFETIME = 600
CLOCK_SKEW = 60


@dataclass
class Auth:
    kind: str  # "jwt", "token", "none", "invalid"
    token: Any = None
    problem: Reply | None = None


def _bad_credentials() -> Reply:
    return error(401, "Bad credentials")


def authenticate(sim: GitHubSim, header: str | None) -> Auth:
    """Who is calling: the App (a JWT its key signed), an installation (a token we issued), or nobody."""
    if not header:
        return Auth("none")
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value.count(".") == 2:
        try:
            claims = pyjwt.decode(value, sim.app_public_key, algorithms=["RS256"],
                                  options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                           "require": ["iat", "exp", "iss"]})
        except pyjwt.PyJWTError:
            return Auth("invalid", problem=error(401, "A JSON web token could not be decoded"))
        now = sim.now()
        if str(claims["iss"]) != str(sim.app_id):
            return Auth("invalid", problem=error(401, "'Issuer' claim ('iss') must be the App's id"))
        if claims["exp"] <= now:
            return Auth("invalid", problem=error(
                401, "'Expiration time' claim ('exp') must be a numeric value representing the future time "
                     "at which the assertion expires"))
        if claims["exp"] > now + JWT_MAX_LIFETIME + 5:
            return Auth("invalid", problem=error(401, "'Expiration time' claim ('exp') is too far in the future"))
        if claims["iat"] > now + CLOCK_SKEW:
            return Auth("invalid", problem=error(401, "'Issued at' claim ('iat') must be an Integer representing "
                                                      "the time that the assertion was issued"))
        return Auth("jwt", token=claims)
    if scheme in ("token", "bearer"):
        issued = sim.tokens.get(value)
        if issued is None or issued.expires_at <= sim.now():
            return Auth("invalid", problem=_bad_credentials())
        inst = sim.installations.get(issued.installation_id)
        if inst is None or inst.suspended:
            return Auth("invalid", problem=_bad_credentials())
        return Auth("token", token=issued)
    return Auth("invalid", problem=_bad_credentials())


def _allowed(permissions: dict[str, str], alternatives: tuple[tuple[str, str], ...]) -> bool:
    if not alternatives:
        return True
    for name, level in alternatives:
        granted = "read" if name == "metadata" else permissions.get(name)
        if LEVELS.get(granted or "", 0) >= LEVELS[level]:
            return True
    return False


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


class _Handling:
    """One request through the pipeline; `respond` logs it and adds the common headers."""

    def __init__(self, request: web.Request, sim: GitHubSim, prefix: str):
        self.request = request
        self.sim = sim
        self.prefix = prefix
        self.bucket: str | None = None
        self.counted = False
        self.auth_kind = "none"
        self.installation_id: int | None = None
        self.template: str | None = None
        self.body_json: Any = None

    def respond(self, reply: Reply, path: str) -> web.Response:
        sim = self.sim
        headers = {"x-github-media-type": "github.v3; format=json", "x-github-request-id": uuid.uuid4().hex[:16],
                   **reply.headers}
        if self.bucket is not None:
            remaining, used, reset = sim.rate_state(self.bucket)
            headers.update({"x-ratelimit-limit": str(sim.rate_limit), "x-ratelimit-remaining": str(remaining),
                            "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset),
                            "x-ratelimit-resource": "core"})
        if isinstance(reply.body, (bytes, bytearray)):
            raw = bytes(reply.body)
        elif reply.body is None:
            raw = b""
        else:
            raw = json.dumps(reply.body).encode()
        status = reply.status
        if self.request.method == "GET" and status == 200:
            etag = _etag(raw)
            headers["etag"] = etag
            if self.request.headers.get("if-none-match") == etag:
                status, raw = 304, b""
                if self.counted and self.bucket is not None:
                    # An authorised conditional request answered 304 does not cost a request.
                    sim.refund_request(self.bucket)
                    remaining, used, _ = sim.rate_state(self.bucket)
                    headers["x-ratelimit-remaining"], headers["x-ratelimit-used"] = str(remaining), str(used)
        sim.requests.append(LoggedRequest(
            method=self.request.method, path=path, status=status, auth=self.auth_kind, body=self.body_json,
            installation_id=self.installation_id, template=self.template,
            headers={k.lower(): v for k, v in self.request.headers.items() if k.lower() != "authorization"},
            time=sim.now(),
        ))
        if status == 304 or not raw:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, body=raw, headers={**headers, "content-type": reply.content_type})


async def dispatch(request: web.Request) -> web.StreamResponse:
    sim, prefix = request.app[SIM], request.app[PREFIX]
    handling = _Handling(request, sim, prefix)
    path = request.path
    if path.startswith("/_codeload/"):
        return await _codeload(request, handling)
    if prefix:
        if not path.startswith(prefix + "/") and path != prefix:
            return handling.respond(not_found(), path)
        path = path[len(prefix):] or "/"
    raw_body = await request.read()
    bad_json = False
    if raw_body:
        try:
            handling.body_json = json.loads(raw_body)
        except ValueError:
            handling.body_json = raw_body.decode("utf-8", "replace")
            bad_json = True

    auth = authenticate(sim, request.headers.get("authorization"))
    handling.auth_kind = auth.kind
    if auth.kind == "token":
        handling.installation_id = auth.token.installation_id
        handling.bucket = f"installation:{auth.token.installation_id}"
    elif auth.kind == "jwt":
        handling.bucket = "app"
    else:
        handling.bucket = "anonymous"  # shown on every answer; only reached handlers count

    fault = sim.take_fault(request.method, path)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return handling.respond(_fault_reply(sim, fault, handling), path)

    # Match on the raw path so an encoded "/" inside a value (a label named "deploy/x") stays in it.
    raw_path = request.rel_url.raw_path
    if prefix and raw_path.startswith(prefix):
        raw_path = raw_path[len(prefix):] or "/"
    found = match_path(raw_path)
    if found is None:
        return handling.respond(not_found(), path)
    template, params = found
    handling.template = template.template
    key = (request.method, template.template)
    route = ACTIONS_ROUTES.get(key) or ROUTES.get(key) or MANIFEST_ROUTES.get(key)
    if route is None:
        return handling.respond(not_found(), path)
    handler, needs, permissions = route

    if auth.problem is not None:
        return handling.respond(auth.problem, path)
    if needs == "jwt" and auth.kind != "jwt":
        return handling.respond(error(401, "A JSON web token could not be decoded"), path)
    if needs == "token" and auth.kind != "token":
        if auth.kind == "jwt":
            return handling.respond(error(403, "Resource not accessible by integration"), path)
        return handling.respond(error(401, "Requires authentication"), path)

    if bad_json:
        return handling.respond(error(400, "Problems parsing JSON"), path)
    problem = validate_request(template, params, request.method, request.query, request.headers, raw_body,
                               request.content_type if raw_body else "")
    if problem is not None:
        return handling.respond(Reply(problem.status, problem.body), path)

    if handling.bucket is not None and template.template != "/rate_limit":
        remaining_before = sim.rate_state(handling.bucket)[0]
        if remaining_before <= 0:
            return handling.respond(error(403, f"API rate limit exceeded for {handling.bucket.replace(':', ' ID ')}."),
                                    path)
        sim.count_request(handling.bucket)
        handling.counted = True

    call = Call(sim=sim, method=request.method, path=request.path, params=params, query=request.query,
                body=handling.body_json, accept=request.headers.get("accept", ""),
                api_root=_root(request) + prefix, server_root=_root(request))
    if template.template.startswith("/repos/{owner}/{repo}") and needs == "token":
        full_name = f"{params['owner']}/{params['repo']}"
        repo = sim.repos.get(full_name)
        issued = auth.token
        inst = sim.installations[issued.installation_id]
        if repo is None or not inst.covers(full_name) or (
                issued.repositories is not None and full_name not in issued.repositories):
            return handling.respond(not_found(), path)
        if not _allowed(issued.permissions, permissions):
            return handling.respond(error(403, "Resource not accessible by integration"), path)
        call.found_repo = repo
    call.token = auth.token if auth.kind == "token" else None
    try:
        reply = await handler(call)
    except Exception:  # a simulator bug must read as a GitHub 500, not kill the server
        log.exception("simulated GitHub failed on %s %s", request.method, path)
        reply = error(500, "Server Error")
    return handling.respond(reply, path)


def _fault_reply(sim: GitHubSim, fault, handling: _Handling) -> Reply:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after"] = str(int(fault.retry_after) if float(fault.retry_after).is_integer()
                                     else fault.retry_after)
    message = fault.message
    if fault.ratelimit_remaining is not None:
        bucket = handling.bucket or "anonymous"
        handling.bucket = None  # the fault's own rate-limit headers win
        reset = int(sim.now() + (fault.ratelimit_reset_in if fault.ratelimit_reset_in is not None else 60))
        headers.update({"x-ratelimit-limit": str(sim.rate_limit), "x-ratelimit-remaining": str(fault.ratelimit_remaining),
                        "x-ratelimit-used": str(sim.rate_limit - fault.ratelimit_remaining),
                        "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"})
        message = message or f"API rate limit exceeded for {bucket.replace(':', ' ID ')}."
    if fault.status in (403, 429) and message is None:
        message = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                   "If you reach out to GitHub Support for help, please include the request ID.")
    if message is None:
        message = {502: "Server Error", 503: "Service Unavailable", 504: "We couldn't respond to your request "
                   "in time. Sorry about that."}.get(fault.status, "Injected failure")
    return Reply(fault.status, {"message": message, "documentation_url": "https://docs.github.com/rest"}, headers)


async def _codeload(request: web.Request, handling: _Handling) -> web.Response:
    """codeload.github.com: serves the archive a tarball redirect points at (ticket in the URL)."""
    sim = handling.sim
    handling.auth_kind = "codeload"
    found = sim.redeem_codeload(request.query.get("token", ""))
    path = request.path
    if found is None:
        return handling.respond(not_found(), path)
    repo_name, sha = found
    archive = build_tarball(sim.repos[repo_name], sha)
    top = f"{repo_name.replace('/', '-')}-{sha[:7]}"
    return handling.respond(Reply(200, archive, {"content-disposition": f"attachment; filename={top}.tar.gz"},
                                  content_type="application/x-gzip"), path)


def _root(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def make_app(sim: GitHubSim, *, prefix: str = "") -> web.Application:
    """The simulated GitHub as an aiohttp application (`prefix="/api/v3"` serves it like GHES)."""
    app = web.Application(client_max_size=30 * 1024 * 1024)
    app[SIM] = sim
    app[PREFIX] = prefix.rstrip("/")
    add_manifest_pages(app, sim)  # github.com's "new GitHub App" pages (bot/sim/github/manifest.py)
    add_actions_pages(app, sim)  # the artifacts' blob host (bot/sim/github/actions.py)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


# -- webhooks ------------------------------------------------------------------------------


@dataclass
class Delivery:
    delivery_id: str
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def sign(body: bytes, secret: str) -> tuple[str, str]:
    """(`X-Hub-Signature-256`, `X-Hub-Signature`) for a body, as GitHub computes them."""
    sha256 = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return f"sha256={sha256}", f"sha1={sha1}"


def webhook_headers(event: str, body: bytes, secret: str | None, delivery_id: str,
                    hook_id: int = 1, installation_target_id: int | None = None) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "User-Agent": "GitHub-Hookshot/5b3a5b6",
        "Content-Type": "application/json",
        "Accept": "*/*",
    }
    if installation_target_id is not None:
        headers["X-GitHub-Hook-Installation-Target-ID"] = str(installation_target_id)
    if secret:
        headers["X-Hub-Signature-256"], headers["X-Hub-Signature"] = sign(body, secret)
    return headers


async def deliver(session: aiohttp.ClientSession, event: str, payload: Any, url: str, secret: str | None, *,
                  delivery_id: str | None = None, app_id: int | None = None,
                  timeout: float = 10.0) -> Delivery:
    """POST one webhook the way GitHub does: compact JSON, signed, its headers, a 10 s deadline."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    headers = webhook_headers(event, body, secret, delivery_id, installation_target_id=app_id)
    async with session.post(url, data=body, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return Delivery(delivery_id, response.status, await response.read(), dict(response.headers))


class GitHubSimServer:
    """A running simulated GitHub: `.url` is the GITHUB_API_URL to give Flareship."""

    def __init__(self, sim: GitHubSim, runner: web.AppRunner, site: web.TCPSite, host: str, port: int, prefix: str):
        self.sim = sim
        self._runner = runner
        self._site = site
        self.host = host
        self.port = port
        self.prefix = prefix
        self.root_url = f"http://{host}:{port}"
        self.url = self.root_url + prefix
        self._session: aiohttp.ClientSession | None = None

    @property
    def app_id(self) -> int:
        return self.sim.app_id

    @property
    def app_private_key(self) -> str:
        return self.sim.app_private_key

    async def deliver(self, event: str, payload: Any, url: str, secret: str | None,
                      delivery_id: str | None = None) -> Delivery:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await deliver(self._session, event, payload, url, secret, delivery_id=delivery_id,
                             app_id=self.sim.app_id)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._runner.cleanup()

    async def __aenter__(self) -> GitHubSimServer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def start_github_sim(host: str = "127.0.0.1", port: int = 0, prefix: str = "",
                           sim: GitHubSim | None = None, *, private_key: str | None = None) -> GitHubSimServer:
    """Start the simulated GitHub on `host:port` (0 = any free port); close it with `.close()`."""
    sim = sim or GitHubSim(private_key=private_key)
    prefix = ("/" + prefix.strip("/")) if prefix.strip("/") else ""
    runner = web.AppRunner(make_app(sim, prefix=prefix), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return GitHubSimServer(sim, runner, site, host, bound_port, prefix)
