"""Helpers shared by the dispatcher tests: storing deliveries, waiting for a condition, services."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gidgethub import routing

from bot.engine.ports import GitHubInstallations
from bot.github.app import GitHubUnavailable
from bot.metrics import Metrics
from bot.store.base import utcnow
from bot.store.db import Database
from bot.store.deliveries import DeliveryStore, NewDelivery
from bot.store.dispatchers import DispatcherRegistry


async def store(database: Database, *items: NewDelivery) -> None:
    await DeliveryStore(database).insert(list(items))


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class DispatchParts:
    """The parts the dispatcher itself uses (bot.dispatcher.DispatchServices); the handlers of
    these tests use none of the others."""

    database: Database
    github: GitHubInstallations
    metrics: Metrics
    deliveries: DeliveryStore
    dispatchers: DispatcherRegistry


def services_for(database: Database, *, github: GitHubInstallations | None = None) -> DispatchParts:
    return DispatchParts(database, github or GitHubUnavailable(), Metrics(), DeliveryStore(database),
                         DispatcherRegistry(database))


def about(delivery_id: str, repository: str | None, *, installation: int | None = 42, event: str = "push") -> NewDelivery:
    return NewDelivery(delivery_id, event, None, installation, repository, '{"ref": "main"}', utcnow())


def logging_router(events: list[str], *, hold: set[str] | None = None, release: asyncio.Event | None = None) -> routing.Router:
    """Handlers that log `start x` / `end x`; the deliveries in `hold` wait for `release`."""
    router = routing.Router()

    async def handler(event: Any, ctx: Any) -> None:
        events.append(f"start {event.delivery_id}")
        if hold and event.delivery_id in hold and release is not None:
            await release.wait()
        events.append(f"end {event.delivery_id}")

    for name in ("push", "installation", "installation_repositories", "security_advisory"):
        router.add(handler, name)
    return router
