"""Fixtures of the Cloudflare area: the simulated Cloudflare, a client on it, real OCI registries.

- `cloudflare_sim`: a running `CloudflareSimServer` (`.url`, `.workers_url_template`,
  `.registry_url`, `.sim`) with one paid account `CF_ACCOUNT_ID` (workers.dev subdomain
  `flareship-sim`) and a full-permission token `CF_TOKEN` already seeded; Cloudflare's
  1200 requests / 5 min per-token limit is enforced.
- `cloudflare_client`: a `CloudflareClient` on it whose retry waits and budget run on a fake clock
  (`cloudflare_clock`), so retries cost no wall time.
- `docker_registries`: two Debian `docker-registry` servers (source, target) on loopback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bot.cloudflare import CloudflareClient, RequestBudget
from bot.sim.cloudflare import start_cloudflare_sim

CF_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
CF_TOKEN = "sim-token-full-0123456789abcdef"
CF_SUBDOMAIN = "flareship-sim"
REGISTRY_BINARY = os.environ.get("FLARESHIP_REGISTRY_BINARY", "docker-registry")


@dataclass
class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it; records every sleep."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def cloudflare_sim():
    server = await start_cloudflare_sim(rate_limit=1200)  # Cloudflare's real per-token limit
    server.seed_account(CF_ACCOUNT_ID, CF_TOKEN, subdomain=CF_SUBDOMAIN)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def cloudflare_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cloudflare_http():
    async with httpx.AsyncClient(timeout=httpx.Timeout(1.0)) as http:
        yield http


def make_client(server, http: httpx.AsyncClient, clock: FakeClock, token: str = CF_TOKEN, **kw) -> CloudflareClient:
    """A client on the simulator with its waits on `clock`."""
    budget = kw.pop("budget", None) or RequestBudget(clock=clock, sleep=clock.sleep)
    return CloudflareClient(http, base_url=server.url, api_token=token, budget=budget, sleep=clock.sleep, **kw)


@pytest.fixture
async def cloudflare_client(cloudflare_sim, cloudflare_http, cloudflare_clock) -> CloudflareClient:
    return make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, version_retry_delays=(0.01,) * 5)


# -- Debian's docker-registry ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DockerRegistry:
    url: str
    process: subprocess.Popen
    root: Path

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


def _start_docker_registry(binary: str, root: Path) -> DockerRegistry:
    port = _free_port()
    storage = root / "data"
    storage.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "health:\n  storagedriver:\n    enabled: false\n"
    )
    with open(root / "registry.log", "wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(root / 'registry.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/v2/", timeout=0.5).status_code == 200:
                return DockerRegistry(url, process, root)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("docker-registry did not start in 15 s")


@pytest.fixture(scope="session")
def docker_registry_binary() -> str:
    binary = shutil.which(REGISTRY_BINARY) or (REGISTRY_BINARY if os.path.exists(REGISTRY_BINARY) else None)
    if binary is None:
        reason = (f"Debian's docker-registry binary ({REGISTRY_BINARY}) is not installed;"
                  " `apt-get install docker-registry` (or .ci/run) to run the real-registry tests")
        if os.environ.get("FLARESHIP_REQUIRE_REGISTRY") == "1":
            pytest.fail(reason + " - FLARESHIP_REQUIRE_REGISTRY=1 forbids skipping")
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def docker_registries(docker_registry_binary):
    """(source, target): two real registries, the target standing in for Cloudflare's."""
    root = Path(tempfile.mkdtemp(prefix="flareship-registry-"))
    started = []
    try:
        for name in ("source", "target"):
            started.append(_start_docker_registry(docker_registry_binary, root / name))
        yield started[0], started[1]
    finally:
        for registry in started:
            registry.process.terminate()
            try:
                registry.process.wait(5)
            except subprocess.TimeoutExpired:
                registry.process.kill()
        shutil.rmtree(root, ignore_errors=True)
