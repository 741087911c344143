"""Which webhook deliveries must wait for which: GitHub's order within a lane, and installation
changes as barriers for their own installation.

A lane is a repository; deliveries about no repository (a `security_advisory`, a
`github_app_authorization`) share one lane per installation, so that they neither hold up nor
are held up by the repositories. Within a lane deliveries run one after the other in id
(arrival) order. Only an installation change (`installation`, `installation_repositories`:
repositories and permissions come and go) is a barrier: it runs after every earlier delivery of
its installation and before any later one, while other installations go on.

The dispatcher's lanes (`bot.lanes`) keep these rules within a process; the claim
(`deliveries.claim_pending`) keeps them across replicas: no replica claims a delivery while one
it must wait for is claimed by another owner, live or awaiting takeover.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

BARRIER_EVENTS = frozenset({"installation", "installation_repositories"})
_NEVER = float("inf")


class Ordered(Protocol):
    """What ordering looks at in a delivery (a `StoredDelivery`, or a `Slot` read for a claim)."""

    @property
    def id(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def installation_id(self) -> int | None: ...
    @property
    def repository(self) -> str | None: ...


class Slot(NamedTuple):
    """The ordering columns of one stored delivery."""

    id: int
    event: str
    installation_id: int | None
    repository: str | None


def is_barrier(delivery: Ordered) -> bool:
    return delivery.event in BARRIER_EVENTS


def lane_key(delivery: Ordered) -> str:
    """The repository; for a delivery about none, its installation's lane ('#' is in no repository name)."""
    if delivery.repository is not None:
        return delivery.repository
    return f"#installation {delivery.installation_id}" if delivery.installation_id is not None else "#app"


class Blockers:
    """Deliveries a claimer must not overtake: claimed by other owners, or left pending before.

    `holds(d)` says whether `d` must wait for one of them: an older delivery of its lane, an older
    barrier of its installation, or (when `d` is a barrier) any older delivery of its installation.
    A delivery left waiting is `add`ed in turn, so that the ones after it wait too.
    """

    def __init__(self, deliveries: list[Slot] | None = None) -> None:
        self._lane: dict[str, int] = {}
        self._barrier: dict[int | None, int] = {}
        self._installation: dict[int | None, int] = {}
        for delivery in deliveries or ():
            self.add(delivery)

    def add(self, delivery: Ordered) -> None:
        key, installation = lane_key(delivery), delivery.installation_id
        self._lane[key] = min(self._lane.get(key, delivery.id), delivery.id)
        self._installation[installation] = min(self._installation.get(installation, delivery.id), delivery.id)
        if is_barrier(delivery):
            self._barrier[installation] = min(self._barrier.get(installation, delivery.id), delivery.id)

    def holds(self, delivery: Ordered) -> bool:
        installation = delivery.installation_id
        return (
            self._lane.get(lane_key(delivery), _NEVER) < delivery.id
            or self._barrier.get(installation, _NEVER) < delivery.id
            or (is_barrier(delivery) and self._installation.get(installation, _NEVER) < delivery.id)
        )
