"""What an engine knows of its row leases: which claimed rows are surely still its own.

A row is claimed under a lease (``lease_seconds``) and renewed by the monitor. Another engine
takes a row over only when its holder looks dead: the lease lapsed *and* the holder wrote no
heartbeat for ``STALE_HEARTBEAT_SECONDS``, or the holder was reclaimed as dead
(``owners.dead_owners``). A live engine that is merely late to renew (a loaded machine: 3 s
leases lapsed dozens of times a minute at load 7 on 2 cores) keeps its rows.

So a row is surely ours while we hold it (claimed, and no renewal said it was lost), our own
heartbeat was written within a third of the stale window (the rest is the allowance for clock
skew between machines), and no gap in our heartbeats lies between the claim (or the last
renewal) and now: a process resumed after a long stop beats again at once, but its rows may
be gone. Only when it is not sure does the engine ask the database before sending, which
costs a round trip per message only while it is in doubt.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from typing import Any

from bulkmail.db import control, queries
from bulkmail.db.engine import Database
from bulkmail.delivery import owners
from bulkmail.delivery.owners import STALE_HEARTBEAT_SECONDS
from bulkmail.errors import BulkmailError

log = logging.getLogger(__name__)
REAP_SECONDS = 5.0  # how often to look for dead engines' leases (and once at start)


class LeaseBook:
    """The rows this engine holds (with their lease expiry, UNIX time) and when our
    heartbeat was last written."""

    def __init__(self, lease: float, stale_after: float = STALE_HEARTBEAT_SECONDS) -> None:
        self.lease = lease
        self.fresh = stale_after / 3
        self.until: dict[int, float] = {}
        self.beat_at = -math.inf

    def held(self, ids: Iterable[int], now: float) -> None:
        """Rows claimed or renewed at ``now``: ours until ``now + lease``."""
        until = now + self.lease
        for i in ids:
            self.until[i] = until

    def renewed(self, asked: Iterable[int], kept: Container[int], now: float) -> list[int]:
        """The answer to a renewal of ``asked``; returns the ids that were lost."""
        lost = []
        until = now + self.lease
        for i in asked:
            if i in kept:
                self.until[i] = until
            else:
                self.until.pop(i, None)
                lost.append(i)
        return lost

    def forget(self, ids: Iterable[int]) -> None:
        for i in ids:
            self.until.pop(i, None)

    def beat(self, now: float) -> bool:
        """Our heartbeat was written at ``now``. After a gap (we were stopped or stalled for
        a third of the stale window) peers may have judged us dead meanwhile: every row is in
        doubt until a renewal confirms it. Returns True after such a gap."""
        gap = now - self.beat_at >= self.fresh
        if gap:
            self.until.clear()
        self.beat_at = now
        return gap

    def sure(self, row_id: int, now: float) -> bool:
        """True if no other engine can have taken the row: no need to ask the database."""
        return row_id in self.until and now - self.beat_at < self.fresh


class LeaseKeeper:
    """The engine's side of its row leases, on the engine's DB thread (``in_db``): the book,
    renewals that say what was lost, the check before a message, and reclaiming the leases
    of dead engines (``owners``) so their rows come due at once."""

    def __init__(
        self, db: Database, owner: str, lease: float, in_db: Callable[..., Awaitable[Any]]
    ) -> None:
        self.db, self.owner, self.lease, self._in_db = db, owner, lease, in_db
        self.book = LeaseBook(lease)
        self.reaped_at = -math.inf  # monotonic

    def claimed(self, ids: Iterable[int], now: float) -> None:
        self.book.held(ids, now)

    async def renew(self, ids: list[int]) -> list[int]:
        """Renew the rows; returns those lost to another engine (to be dropped, not sent)."""
        now = time.time()
        kept = await self._in_db(queries.renew, self.db, self.owner, ids, now, self.lease)
        return self.book.renewed(ids, kept, now)

    async def confirm(self, row_id: int) -> bool | None:
        """Right before sending: True if the row is still ours, False if it was lost, None
        if the database cannot tell (then it must not be sent either)."""
        now = time.time()
        if self.book.sure(row_id, now):
            return True
        try:
            kept = await self._in_db(queries.renew, self.db, self.owner, [row_id], now, self.lease)
        except BulkmailError as exc:
            log.warning("cannot confirm the lease of delivery %s (%s); not sending it", row_id, exc)
            return None
        if self.book.renewed([row_id], kept, now):
            log.warning("delivery %s was claimed by another engine; not sending it", row_id)
            return False
        return True

    async def reap(self) -> None:
        """End the leases (rows and slots) of dead engines now."""
        self.reaped_at = time.monotonic()
        now = time.time()
        holders, seen = await self._in_db(control.lease_holders, self.db)
        dead = owners.dead_owners(holders, seen, me=self.owner, now=now)
        if dead:
            rows = await self._in_db(control.reclaim, self.db, sorted(dead), now)
            log.info("reclaimed %d deliveries and the slots of %d dead engine(s)", rows, len(dead))

    def reap_due(self) -> bool:
        return time.monotonic() - self.reaped_at >= REAP_SECONDS
