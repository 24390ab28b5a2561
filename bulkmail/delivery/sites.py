"""Destination sites: their ready queues, limits, pace and fleet-wide leases.

A site is the set of MX hosts a domain resolves to; every domain on the same hosts shares one
Site, so its limits hold for all of them. A process may open sessions to a site only while it
holds the site's lease in the database (``db.control.acquire_site``): that is what makes
``connections`` and ``rate`` hold for a whole fleet of workers, not per process. A site whose
lease another process holds is *foreign*: its rows are given back and its domains left out of
this process's claims until the lease comes free.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bulkmail.config import Limits
from bulkmail.db.queries import Claimed
from bulkmail.delivery.classify import Reply
from bulkmail.delivery.routing import Route
from bulkmail.delivery.throttle import RateLimiter

RETRY_FOREIGN_SECONDS = 3.0  # how often to ask again for a site another process holds
IDLE_RELEASE_SECONDS = 2.0  # a held site with nothing to do gives its lease back after this


@dataclass
class Site:
    """One destination site as this process sees it."""

    name: str
    limits: Limits
    limiter: RateLimiter
    queue: asyncio.Queue[tuple[Claimed, Route] | None] = field(default_factory=asyncio.Queue)
    domains: set[str] = field(default_factory=set)
    lanes: int = 0
    held: bool = False
    asked_at: float = 0.0  # monotonic time of the last acquire attempt
    idle_since: float = field(default_factory=time.monotonic)
    down_until: float = 0.0
    down_reply: Reply | None = None

    def busy(self) -> bool:
        return self.lanes > 0 or not self.queue.empty()

    def should_retry(self, now: float) -> bool:
        return not self.held and now - self.asked_at >= RETRY_FOREIGN_SECONDS

    def idle_for(self, now: float) -> float:
        if self.busy():
            self.idle_since = now
            return 0.0
        return now - self.idle_since

    def saturation_cap(self) -> int:
        """Rows waiting for this site beyond which its domains are left out of claims."""
        return max(self.limits.connections * 50, int(self.limits.rate * 10))


def drain(queue: asyncio.Queue[tuple[Claimed, Route] | None]) -> list[Claimed]:
    """Empty a ready queue; returns the rows that were waiting."""
    rows = []
    while not queue.empty():
        item = queue.get_nowait()
        if item is not None:
            rows.append(item[0])
    return rows
