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

import math
from collections.abc import Container, Iterable

from bulkmail.delivery.owners import STALE_HEARTBEAT_SECONDS


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
