"""Simulated Workers static assets: upload sessions, bucket uploads and serving the deployed files.

As Cloudflare behaves (workers-sdk deploy-helpers assets.ts is the client): the session answers
buckets of only the hashes the account lacks, and the completion token directly when it lacks
none; uploads need the session JWT; the last bucket answers 201 with the completion token. A
Worker whose live version's metadata carries that token serves the files
(`html_handling`, `not_found_handling` of its `assets.config`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from bot.sim.cloudflare.app import JSON_BODY, MODULES, SIM, _account, envelope
from bot.sim.cloudflare.state import CloudflareSim, SimError
from bot.sim.cloudflare.validation import PREFIX

assets_routes = web.RouteTableDef()
A = PREFIX + "/accounts/{account_id}"
HASH = re.compile(r"^[0-9a-f]{32}$")
BUCKET_SIZE = 50


@dataclass
class Session:
    account_id: str
    script: str
    manifest: dict[str, dict[str, Any]]
    missing: set[str]
    completion: str


@dataclass
class AssetsState:
    #: (account id, hash) -> (content, content type)
    files: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    #: completion token -> (account id, manifest)
    completions: dict[str, tuple[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    #: hashes received, in order (tests: "nothing re-uploaded")
    uploaded: list[str] = field(default_factory=list)


_STATES: WeakKeyDictionary[CloudflareSim, AssetsState] = WeakKeyDictionary()


def assets_of(sim: CloudflareSim) -> AssetsState:
    state = _STATES.get(sim)
    if state is None:
        state = _STATES[sim] = AssetsState()
    return state


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(16)}"


@assets_routes.post(A + "/workers/scripts/{script_name}/assets-upload-session")
async def create_session(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    body = request.get(JSON_BODY)
    manifest = body.get("manifest") if isinstance(body, dict) else None
    if not isinstance(manifest, dict):
        raise SimError(400, 10021, "manifest is required")
    for path, entry in manifest.items():
        if not path.startswith("/") or not isinstance(entry, dict) or not HASH.match(str(entry.get("hash"))) \
                or not isinstance(entry.get("size"), int):
            raise SimError(400, 10021, f"invalid manifest entry for {path!r}")
    state = assets_of(request.app[SIM])
    script = request.match_info["script_name"]
    completion = _jwt({"accountId": account.id, "scriptName": script, "kind": "completion"})
    state.completions[completion] = (account.id, dict(manifest))
    missing = sorted({e["hash"] for e in manifest.values() if (account.id, e["hash"]) not in state.files})
    if not missing:
        return envelope({"jwt": completion, "buckets": []})
    token = _jwt({"accountId": account.id, "scriptName": script, "kind": "upload"})
    state.sessions[token] = Session(account.id, script, dict(manifest), set(missing), completion)
    buckets = [missing[i:i + BUCKET_SIZE] for i in range(0, len(missing), BUCKET_SIZE)]
    return envelope({"jwt": token, "buckets": buckets})


@assets_routes.post(A + "/workers/assets/upload")
async def upload(request: web.Request) -> web.Response:
    state = assets_of(request.app[SIM])
    header = request.headers.get("Authorization", "")
    session = state.sessions.get(header[7:]) if header.startswith("Bearer ") else None
    if session is None or session.account_id != request.match_info["account_id"]:
        raise SimError(401, 10001, "Unauthorized: invalid or expired assets upload token")
    if request.query.get("base64") != "true":
        raise SimError(400, 10021, "base64=true is required")
    for name, part in request.get(MODULES, {}).items():
        if name not in session.missing and (session.account_id, name) not in state.files:
            raise SimError(400, 10021, f"{name} was not requested by this session")
        try:
            content = base64.b64decode(part.content, validate=True)
        except (binascii.Error, ValueError):
            raise SimError(400, 10021, f"{name} is not base64") from None
        ctype = part.content_type if part.content_type != "application/null" else ""
        state.files[(session.account_id, name)] = (content, ctype)
        state.uploaded.append(name)
        session.missing.discard(name)
    if session.missing:
        return envelope({"jwt": None}, status=202)
    return envelope({"jwt": session.completion}, status=201)


def _candidates(path: str, html_handling: str) -> list[str]:
    if html_handling == "none":
        return [path]
    if path.endswith("/"):
        return [path + "index.html", path.rstrip("/") + ".html"]
    return [path, path + ".html", path + "/index.html"]


def serve_asset(sim: CloudflareSim, metadata: dict[str, Any], path: str) -> web.Response | None:
    """The deployed asset for `path`, or None to let the Worker answer."""
    assets = metadata.get("assets") or {}
    found = assets_of(sim).completions.get(str(assets.get("jwt")))
    if found is None:
        return None
    account_id, manifest = found
    config = assets.get("config") or {}
    if config.get("run_worker_first") is True:
        return None
    for candidate in _candidates(path, str(config.get("html_handling") or "auto-trailing-slash")):
        entry = manifest.get(candidate)
        if entry is not None:
            content, ctype = assets_of(sim).files[(account_id, entry["hash"])]
            return web.Response(body=content, headers={"Content-Type": ctype} if ctype else {})
    handling = config.get("not_found_handling")
    if handling == "single-page-application" and "/index.html" in manifest:
        content, ctype = assets_of(sim).files[(account_id, manifest["/index.html"]["hash"])]
        return web.Response(body=content, headers={"Content-Type": ctype} if ctype else {})
    if handling == "404-page":
        directory = path.rsplit("/", 1)[0]
        while True:
            entry = manifest.get(f"{directory}/404.html")
            if entry is not None:
                content, ctype = assets_of(sim).files[(account_id, entry["hash"])]
                return web.Response(status=404, body=content, headers={"Content-Type": ctype} if ctype else {})
            if not directory:
                break
            directory = directory.rsplit("/", 1)[0]
    return None
