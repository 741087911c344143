"""The generated entry module of an image-only app, run in workerd with a stand-in container engine
(tests/workerd/standin.js): a body survives cold-start retries, vars reach the container's
environment, the cold-start wait is configurable, and max_instances spreads requests."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.engine.appspec import generated_worker, resolve_seed_app
from tests.workerd.runtime import capnp_string, find_workerd, free_port, serve

HERE = Path(__file__).resolve().parent


@pytest.fixture
def workerd() -> str:
    return find_workerd()


@pytest.fixture
async def backend():
    """The container's server: echoes what reached it."""
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path, "body": body.decode(),
                                  "env": json.loads(request.headers.get("x-container-env", "null")),
                                  "instance": request.headers.get("x-instance"),
                                  "attempts": int(request.headers.get("x-attempts", "0")),
                                  "port": request.headers.get("x-port")})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def _config(spec, listen: int, backend: int, extra_vars: dict[str, str]) -> str:
    bindings = []
    for name, value in {**spec.vars, **extra_vars}.items():
        if isinstance(value, str):
            bindings.append(f"(name = {capnp_string(name)}, text = {capnp_string(value)})")
        else:
            bindings.append(f"(name = {capnp_string(name)}, json = {capnp_string(json.dumps(value))})")
    binding = spec.durable_objects[0].binding
    bindings.append(f'(name = "{binding}", durableObjectNamespace = "{spec.container.class_name}")')
    bindings.append('(name = "BACKEND", service = "backend")')
    return f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .app),
    (name = "backend", external = (address = "127.0.0.1:{backend}", http = ())),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{listen}", http = (), service = "main")],
);
const app :Workerd.Worker = (
  modules = [
    (name = "standin.js", esModule = embed "standin.js"),
    (name = "index.js", esModule = embed "index.js"),
  ],
  compatibilityDate = "{spec.compatibility_date}",
  bindings = [{", ".join(bindings)}],
  durableObjectNamespaces = [(className = "{spec.container.class_name}", uniqueKey = "flareship-test")],
  durableObjectStorage = (inMemory = void),
);
"""


def _spec(max_instances: int = 1):
    spec = resolve_seed_app({"appName": "shop", "containerImage": "registry.example.com/shop:1",
                             "environmentVars": {"GREETING": "hello", "LIMITS": {"rps": 5}}}, "staging")
    assert spec.container is not None
    return spec.model_copy(update={"container": spec.container.model_copy(update={"max_instances": max_instances})})


async def _run(tmp_path: Path, workerd: str, backend: int, spec, extra_vars: dict[str, str]):
    (tmp_path / "index.js").write_text(generated_worker(spec))
    (tmp_path / "standin.js").write_text((HERE / "standin.js").read_text())
    listen = free_port()
    return serve(workerd, tmp_path, _config(spec, listen, backend, extra_vars), listen)


async def test_cold_start_keeps_the_body_and_passes_vars(tmp_path, workerd, backend):
    async with await _run(tmp_path, workerd, backend, _spec(), {"STANDIN_STARTUP_MS": "600"}) as url, httpx.AsyncClient(timeout=30) as http:
        response = await http.post(url + "/orders?x=1", content=b'{"item": "book"}')
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["body"] == '{"item": "book"}' and echoed["method"] == "POST" and echoed["path"] == "/orders"
    assert echoed["attempts"] > 1  # it was a cold start: the first attempts were refused
    assert echoed["env"] == {"GREETING": "hello", "LIMITS": '{"rps":5}'}
    assert echoed["port"] == "8080"


async def test_cold_start_wait_is_configurable(tmp_path, workerd, backend):
    extra = {"STANDIN_STARTUP_MS": "60000", "FLARESHIP_COLD_START_SECONDS": "0.5"}
    async with await _run(tmp_path, workerd, backend, _spec(), extra) as url, httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url + "/")
    assert response.status_code == 503 and "did not start in time" in response.text


async def test_max_instances_spreads_requests(tmp_path, workerd, backend):
    async with await _run(tmp_path, workerd, backend, _spec(max_instances=3), {}) as url, httpx.AsyncClient(timeout=30) as http:
        seen = {(await http.get(url + f"/{i}")).json()["instance"] for i in range(40)}
    assert len(seen) == 3
    async with await _run(tmp_path, workerd, backend, _spec(max_instances=1), {}) as url, httpx.AsyncClient(timeout=30) as http:
        seen = {(await http.get(url + f"/{i}")).json()["instance"] for i in range(10)}
    assert len(seen) == 1


def test_the_old_module_failed_this_test(tmp_path):
    """The retry loop of the generated module must not reuse a consumed request (the bug this guards)."""
    code = generated_worker(_spec())
    assert "port.fetch(request.url, request)" not in code and "arrayBuffer()" in code
