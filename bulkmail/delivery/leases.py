"""What an engine knows of its row leases: until when each claimed row is surely its own.

A row is claimed under a lease (``lease_seconds``) and renewed by the monitor. Under load an
engine can be late to renew, or be judged dead by its peers (``owners.dead_owners``), and then
another engine may claim the row. Asking the database before every message would cost a round
trip per message, so the engine asks only when it cannot be sure: when the row's lease, as last
written, ends within ``margin``, or when its own heartbeat has not been written for a third of
the stale window. Otherwise no other engine may take the row (with clocks within the margin).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable

from bulkmail.delivery.owners import STALE_HEARTBEAT_SECONDS


class LeaseBook:
    """Lease expiry per held row (UNIX time) and when our heartbeat was last written."""

    def __init__(self, lease: float, stale_after: float = STALE_HEARTBEAT_SECONDS) -> None:
        self.lease = lease
        self.margin = min(lease / 4, 10.0)
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

    def beat(self, now: float) -> None:
        self.beat_at = now

    def sure(self, row_id: int, now: float) -> bool:
        """True if no other engine can have claimed the row: no need to ask the database."""
        return (
            self.until.get(row_id, -math.inf) - now > self.margin
            and now - self.beat_at < self.fresh
        )
