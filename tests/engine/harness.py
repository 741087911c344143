"""Engine test harness: the simulated Cloudflare (API + Workers + account registry) and a source
registry on loopback, plus an Engine wired to them. Shared by the engine tests, the crash-test
child process and the benchmark.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.engine import AppSpec, Engine
from bot.engine.appspec import ContainerSpec, DurableObjectSpec, container_app_name, script_name_for
from bot.settings import Settings
from bot.sim.cloudflare.app import make_app
from bot.sim.cloudflare.state import CloudflareSim
from bot.sim.registry import RunningRegistry, build_test_image, seed_image, start_registry
from tests.engine.engine_factory import ACCOUNT_ID, TOKEN, make_engine  # noqa: F401  (re-exported)

APP_MODULE = """
import { DurableObject } from "cloudflare:workers";
export class AppContainer extends DurableObject {}
export class Counter extends DurableObject {}
export default { async fetch() { return new Response("ok"); } };
"""


def inline_app(env, name="shop", environment="staging", *, image=True, classes=("AppContainer",),
               module=APP_MODULE, **kw) -> AppSpec:
    script = script_name_for(name, environment)
    container = None
    if image:
        container = ContainerSpec(image=env.image() if image is True else image, class_name="AppContainer",
                                  instance_type="basic", max_instances=2,
                                  application_name=container_app_name(script, "AppContainer"))
    kw.setdefault("compatibility_date", "2025-09-01")
    return AppSpec(name=name, environment=environment, script_name=script, source="inline",
                   main_module="index.js",
                   durable_objects=[DurableObjectSpec(class_name=c, binding=c.upper()) for c in classes],
                   container=container, vars={"MODE": "test", "LIMIT": 3}, health_check_timeout=1,
                   inline_modules={"index.js": module}, **kw)


@dataclass
class SimEnv:
    sim: CloudflareSim
    runner: web.AppRunner
    port: int
    source_registry: RunningRegistry
    images: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/client/v4"

    @property
    def workers_url_template(self) -> str:
        return self.base + "/__workers/{subdomain}/{script}"

    def image(self, name: str = "acme/app", tag: str = "1") -> str:
        return f"{self.source_registry.host}/{name}:{tag}"

    def add_image(self, name: str = "acme/app", tag: str = "1", seed: str | None = None) -> str:
        digest = seed_image(self.source_registry.state, name, tag, build_test_image(seed or f"{name}:{tag}",
                                                                                    layer_bytes=256))
        self.images[f"{name}:{tag}"] = digest
        return self.image(name, tag)

    def settings(self, database_url: str, **overrides) -> Settings:
        values: dict[str, Any] = dict(
            cloudflare_api_url=self.api_url,
            cloudflare_api_token=TOKEN,
            cloudflare_account_id=ACCOUNT_ID,
            container_registry_url=self.base,
            workers_url_template=self.workers_url_template,
            database_url=database_url,
            environment_overrides={},
        )
        values.update(overrides)
        return Settings(**values)

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.source_registry.close()


async def start_sim_env(*, plan: str = "paid", port: int = 0, validate_requests: bool = True) -> SimEnv:
    """Simulated Cloudflare on loopback whose own registry is CONTAINER_REGISTRY_URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    sim = CloudflareSim(registry_host=f"127.0.0.1:{bound}")
    sim.validate_requests = validate_requests
    sim.add_account(ACCOUNT_ID, name="Acme", plan=plan, subdomain="acme")  # Flareship never registers one
    sim.add_token(TOKEN, account_ids=[ACCOUNT_ID])
    app = make_app(sim)
    # handler_cancellation: a request whose client died (the SIGKILL tests) stops with it, as
    # it would on a real server, instead of sleeping through an injected delay past the test.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=0.5)
    await site.start()
    source = await start_registry()
    env = SimEnv(sim, runner, bound, source)
    env.add_image()
    return env


async def wait_final(engine: Engine, deployment_id: str, timeout: float = 20.0):
    """Poll until the deployment reaches a final status (tests only)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        d = await engine.get(deployment_id)
        if d.is_final:
            return d
        if loop.time() > deadline:
            raise AssertionError(f"deployment {deployment_id} still {d.status}: "
                                 + ", ".join(f"{s.name}={s.status}" for s in d.steps))
        await asyncio.sleep(0.02)
