"""Destination sites: their ready queues, limits, pace and their share of fleet-wide slots.

A site is the set of MX hosts a domain resolves to; every domain on the same hosts shares one
Site, so its limits hold for all of them. A site's ``connections`` are slots leased in the
database (``db.control.acquire_slots``); a lane (one SMTP session at a time) runs only on a
slot this process holds, so ``connections`` hold for a whole fleet. ``rate`` is shared out in
proportion: a process holding 3 of 10 slots paces itself at 3/10 of the rate. A process takes
at most its fair share of a site's slots (connections / live engines), so a fleet spreads every
busy site across its workers. A site none of whose slots this process can get is *foreign*
for a while: its rows are given back (and the claimer backs off briefly).
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

RETRY_FOREIGN_SECONDS = 1.0  # how often to ask again for a site another process holds
IDLE_RELEASE_SECONDS = 2.0  # a held site with nothing to do gives its lease back after this


@dataclass
class Site:
    """One destination site as this process sees it."""

    name: str
    limits: Limits
    limiter: RateLimiter
    queue: asyncio.Queue[tuple[Claimed, Route] | None] = field(default_factory=asyncio.Queue)
    domains: set[str] = field(default_factory=set)
    slots: set[str] = field(default_factory=set)  # slot keys this process holds
    free: list[str] = field(default_factory=list)  # held slots no lane is using
    lanes: int = 0
    asked_at: float = -1e9  # monotonic time of the last attempt to get slots
    idle_since: float = field(default_factory=time.monotonic)
    down_until: float = 0.0
    down_reply: Reply | None = None

    def fair_share(self, live: int) -> int:
        """Slots this process may hold when ``live`` engines share the fleet."""
        return max(1, -(-self.limits.connections // max(1, live)))

    def wanted(self, live: int) -> int:
        """Slots worth holding now: enough lanes for the queue, within the fair share."""
        return min(self.fair_share(live), self.lanes + self.queue.qsize())

    def may_ask(self, now: float) -> bool:
        return now - self.asked_at >= RETRY_FOREIGN_SECONDS

    def set_slots(self, held: set[str]) -> None:
        """Adopt the slots held now; the pace follows the share of slots."""
        in_use = self.slots - set(self.free)
        self.slots = held
        self.free = sorted(held - in_use)
        share = min(1.0, len(held) / self.limits.connections)  # more held than a throttle allows
        if self.limits.rate and share and abs(self.limiter.rate - self.limits.rate * share) > 1e-9:
            self.limiter.retune(self.limits.rate * share)

    def busy(self) -> bool:
        return self.lanes > 0 or not self.queue.empty()

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
