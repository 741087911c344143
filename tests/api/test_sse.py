"""SSE logs: replay, Last-Event-ID resume, live streaming, keep-alive, the final event, other replicas."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from bot.services import SERVICES
from tests.api.conftest import app_config, wait_final


async def read_events(resp, *, until_end: bool = True, timeout: float = 20.0, max_events: int | None = None):
    """Parse an SSE stream into dicts {id, event, data, comment}; stops at `event: end`."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while True:
            raw = await resp.content.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if line == "":
                if current:
                    events.append(current)
                    if current.get("event") == "end" and until_end:
                        break
                    if max_events is not None and len(events) >= max_events:
                        break
                current = {}
                continue
            if line.startswith(":"):
                current["comment"] = line[1:].strip()
                continue
            field, _, value = line.partition(": ")
            if field == "data":
                current["data"] = json.loads(value)
            elif field == "id":
                current["id"] = int(value)
            else:
                current[field] = value
    return events


def log_events(events):
    return [e for e in events if "id" in e]


async def _deploy(api, token, name="shop"):
    resp, body = await api.call("POST", "/deploy", token=token,
                                json={"environment": "staging", "config": app_config(api.sim_env, name=name)})
    assert resp.status == 200, body
    return body["data"]["deploymentId"]


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_replay_then_end_and_resume_with_last_event_id(deploy_api):
    api = deploy_api
    token = await api.token("read", "deploy:staging")
    dep_id = await _deploy(api, token)
    await wait_final(api, token, dep_id)

    resp = await api.request("GET", f"/deploy/{dep_id}/logs", token=token)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    events = await read_events(resp)
    lines = log_events(events)
    stored = await api.app[SERVICES].engine.logs(dep_id)
    assert [e["id"] for e in lines] == [line.id for line in stored]
    assert all(set(e["data"]) >= {"timestamp", "level", "message"} for e in lines)
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "completed"
    end = events[-1]["data"]  # the seed: every event's data is {timestamp, level, message}
    assert end["level"] == "info" and end["deploymentId"] == dep_id and dep_id in end["message"]
    assert end["timestamp"].endswith("Z") and end["timestamp"] >= lines[-1]["data"]["timestamp"]
    assert "id" not in events[-1]  # resuming never skips the end event
    assert await resp.content.read() == b""  # the server closed the stream

    cut = lines[len(lines) // 2]["id"]
    resp = await api.request("GET", f"/deploy/{dep_id}/logs", token=token, headers={"Last-Event-ID": str(cut)})
    resumed = log_events(await read_events(resp))
    assert [e["id"] for e in resumed] == [line.id for line in stored if line.id > cut]
    resp = await api.request("GET", f"/deploy/{dep_id}/logs?lastEventId={lines[-1]['id']}", token=token)
    tail = await read_events(resp)
    assert log_events(tail) == [] and tail[-1]["event"] == "end"


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_live_stream_of_a_running_deployment(deploy_api):
    api = deploy_api
    token = await api.token("read", "deploy:staging")
    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "config": app_config(api.sim_env)})
    dep_id = body["data"]["deploymentId"]
    stream = await api.request("GET", f"/deploy/{dep_id}/logs", token=token)
    first = await read_events(stream, max_events=1, timeout=5)  # connected before anything ran
    resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "staging"})
    assert resp.status == 200
    events = first + await read_events(stream)
    ids = [e["id"] for e in log_events(events)]
    assert ids == sorted(set(ids)) and len(ids) > 8
    assert events[-1]["data"]["status"] == "completed"
    messages = " ".join(e["data"]["message"] for e in log_events(events))
    assert "Health check" in messages or "health" in messages.lower()


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_keep_alive_while_idle_then_end_on_cancel(deploy_api):
    api = deploy_api
    token = await api.token("read", "deploy:staging")
    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "config": app_config(api.sim_env)})
    dep_id = body["data"]["deploymentId"]
    stream = await api.request("GET", f"/deploy/{dep_id}/logs", token=token)
    seen = []
    async with asyncio.timeout(5):
        while not any(e.get("comment") == "keep-alive" for e in seen):
            seen += await read_events(stream, until_end=False, max_events=1, timeout=5)
    resp, _ = await api.call("POST", f"/deploy/{dep_id}/cancel", token=token)
    assert resp.status == 200
    events = await read_events(stream, timeout=5)
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "cancelled"
    assert events[-1]["data"]["level"] == "warn" and "cancelled" in events[-1]["data"]["message"]


async def test_streams_a_deployment_run_by_another_replica(deploy_api):
    """The API's own engine is stopped; a second engine on the same database runs the deployment.
    No in-process events reach the stream, so only polling the store can deliver the lines."""
    from tests.engine.harness import make_engine

    api = deploy_api
    token = await api.token("read", "deploy:staging")
    local = api.app[SERVICES].engine
    await local.stop()
    settings = api.app[SERVICES].settings
    other, clients = make_engine(settings, api.app[SERVICES].database)
    await other.start()
    try:
        _resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                     json={"environment": "staging", "config": app_config(api.sim_env)})
        dep_id = body["data"]["deploymentId"]
        stream = await api.request("GET", f"/deploy/{dep_id}/logs", token=token)
        await read_events(stream, max_events=1, timeout=5)
        from bot.engine.model import DeployOptions

        await other.deploy(dep_id, DeployOptions())
        events = await read_events(stream, timeout=30)
        assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "completed"
        assert [e["id"] for e in log_events(events)][-1] == (await other.logs(dep_id))[-1].id
    finally:
        await other.stop()
        await clients.aclose()


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_a_stalled_client_does_not_hold_up_the_deployment_or_others(deploy_api):
    api = deploy_api
    token = await api.token("read", "deploy:staging")
    _resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                 json={"environment": "staging", "config": app_config(api.sim_env)})
    dep_id = body["data"]["deploymentId"]
    # A client that connects, asks for the stream with a tiny receive buffer, and never reads.
    host, port = api.client.server.host, api.client.server.port
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.setblocking(False)
    await asyncio.get_running_loop().sock_connect(stalled, (host, port))
    request = (f"GET /deploy/{dep_id}/logs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    await asyncio.get_running_loop().sock_sendall(stalled, request)
    try:
        healthy = await api.request("GET", f"/deploy/{dep_id}/logs", token=token)
        await read_events(healthy, max_events=1, timeout=5)
        await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "staging"})
        events = await read_events(healthy, timeout=20)
        assert events[-1]["data"]["status"] == "completed"
        final = await wait_final(api, token, dep_id, timeout=5)
        assert final["status"] == "completed"
    finally:
        stalled.close()


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_invalid_resume_ids_are_400(api):
    token = await api.token("read")
    path = "/deploy/dep_unknown/logs"  # checked before the deployment is looked up
    for value in ("abc", "-1", "+3", "1.5", "1e3", "\u0663", "0x10", "", "1" * 19):
        resp, body = await api.call("GET", path, token=token, headers={"Last-Event-ID": value.encode().decode("latin-1")})
        assert resp.status == 400, (value, body)
        assert body["error"]["code"] == "SYS_006" and body["error"]["details"]["field"] == "Last-Event-ID", value
    for value in ("abc", "-1", "%20", "", "1" * 19):
        resp, body = await api.call("GET", f"{path}?lastEventId={value}", token=token)
        assert resp.status == 400, (value, body)
        assert body["error"]["details"]["field"] == "lastEventId", value
    # A good header does not excuse a bad query value.
    resp, body = await api.call("GET", f"{path}?lastEventId=x", token=token, headers={"Last-Event-ID": "3"})
    assert resp.status == 400 and body["error"]["details"]["field"] == "lastEventId"
    # Valid ids reach the lookup.
    for headers, query in (({"Last-Event-ID": "0"}, ""), ({}, "?lastEventId=" + "9" * 18)):
        resp, body = await api.call("GET", path + query, token=token, headers=headers)
        assert resp.status == 404 and body["error"]["code"] == "SYS_005", body
