"""A simulated GitHub: the REST calls Flareship makes, checked against GitHub's own OpenAPI
description, plus signed webhook delivery. Tests and `flareship demo` run it on loopback.
"""

from bot.sim.github.server import (
    Delivery,
    GitHubSimServer,
    deliver,
    make_app,
    sign,
    start_github_sim,
    webhook_headers,
)
from bot.sim.github.state import DEFAULT_PERMISSIONS, Fault, GitHubSim, Installation, LoggedRequest

__all__ = [
    "DEFAULT_PERMISSIONS",
    "Delivery",
    "Fault",
    "GitHubSim",
    "GitHubSimServer",
    "Installation",
    "LoggedRequest",
    "deliver",
    "make_app",
    "sign",
    "start_github_sim",
    "webhook_headers",
]
