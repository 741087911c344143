"""Simulated Cloudflare API (Workers, Worker Previews, Durable Objects, Containers) with served Workers and a registry."""

from bot.sim.cloudflare.app import make_app
from bot.sim.cloudflare.server import CloudflareSimServer, start_cloudflare_sim
from bot.sim.cloudflare.state import (
    DEPLOY_PERMISSIONS,
    FULL_PERMISSIONS,
    PERMISSIONS,
    CloudflareSim,
    SimError,
)

__all__ = [
    "DEPLOY_PERMISSIONS",
    "FULL_PERMISSIONS",
    "PERMISSIONS",
    "CloudflareSim",
    "CloudflareSimServer",
    "SimError",
    "make_app",
    "start_cloudflare_sim",
]
