"""`start_cloudflare_sim()`: run the simulated Cloudflare on loopback (tests, demo, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.sim.cloudflare.app import REGISTRY, make_app
from bot.sim.cloudflare.state import FULL_PERMISSIONS, Account, CloudflareSim, Token
from bot.sim.registry import RegistryState, TestImage, seed_image


@dataclass
class CloudflareSimServer:
    """A running simulator: point CLOUDFLARE_API_URL at `.url`, WORKERS_URL_TEMPLATE at
    `.workers_url_template`, CONTAINER_REGISTRY_URL at `.registry_url`."""

    sim: CloudflareSim
    runner: web.AppRunner
    host: str
    port: int

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/client/v4"

    @property
    def workers_url_template(self) -> str:
        return f"{self.origin}/__workers/{{subdomain}}/{{script}}"

    @property
    def registry_url(self) -> str:
        return self.origin

    @property
    def registry_host(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def registry(self) -> RegistryState:
        return self.runner.app[REGISTRY]

    def seed_account(self, account_id: str, token: str, *, plan: str = "paid", type: str = "standard",
                     name: str = "Sim Account", subdomain: str | None = "flareship-sim",
                     permissions=FULL_PERMISSIONS) -> tuple[Account, Token]:
        """An account and a token on it, in one call."""
        account = self.sim.add_account(account_id, name, type, plan, subdomain=subdomain)
        return account, self.sim.add_token(token, [account_id], permissions)

    def seed_image(self, repository: str, tag: str, image: TestImage) -> str:
        """Put an image straight into the built-in registry (no credentials needed)."""
        return seed_image(self.registry, repository, tag, image)

    async def close(self) -> None:
        self.sim.closing.set()
        await self.runner.cleanup()


async def start_cloudflare_sim(host: str = "127.0.0.1", port: int = 0, *, sim: CloudflareSim | None = None,
                               hidden_version_reads: int = 1, rate_limit: int | None = None) -> CloudflareSimServer:
    """Start the simulator (API, served Workers, registry) on one loopback port.

    `rate_limit=1200` enforces Cloudflare's per-token limit (off by default: demos and benchmarks
    run many deployments on one token)."""
    sim = sim or CloudflareSim(hidden_version_reads=hidden_version_reads)
    if rate_limit is not None:
        sim.rate_limit = rate_limit
    app = make_app(sim)
    # A short shutdown timeout: stalled (fault-injected or "slow") handlers must not hold up teardown.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=False, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sim.registry_host = f"{host}:{bound}"
    return CloudflareSimServer(sim, runner, host, bound)
