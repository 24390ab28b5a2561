"""Auto-pause: which outcomes are site failures, and how a batch of them moves the streak (pure).

A campaign pauses itself after ``[schedule] pause_after_failures`` consecutive *site failures*:
outcomes that say more about us or the path than about the recipient (no connection, a lost
session, TLS unavailable, 421, a 5.7.x block). The streak lives in the database
(``campaigns.failure_streak``, ``db.control.count_failures``) so it survives engine passes and
a fleet shares it; any ``sent`` resets it. Every such outcome counts wherever it was decided:
a refusal in a lane, a DNS failure at routing, and the rows failed at once while a site is
known to be down (before any session exists). Counting only the connection attempts let a
refusing host with two lanes add two per pass and never reach the limit: the campaign ran to
``expired`` instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from bulkmail.db.models import BOUNCED, DEFERRED, EXPIRED, SENT
from bulkmail.db.queries import Result

TLS_UNAVAILABLE = "4.7.5"  # classify.tls_unavailable: STARTTLS required but not offered/failed


def is_site_failure(result: Result) -> bool:
    """A failure that says more about us or the path than the recipient: no connection or a
    dropped session (4.4.x, 421), TLS unavailable (4.7.5), or a permanent policy block (5.7.x).
    Greylisting (other 4.7.x) is not one: it is the normal first answer of many servers."""
    enhanced = result.enhanced or ""
    return result.state in (DEFERRED, BOUNCED, EXPIRED) and (
        result.code == 421 or enhanced == TLS_UNAVAILABLE or enhanced.startswith(("4.4.", "5.7."))
    )


def streak_changes(results: Iterable[Result]) -> dict[int, tuple[bool, int]]:
    """Per campaign, in the order written: (a success reset the streak, site failures after
    the last success). The database applies it as ``n if reset else streak + n``."""
    out: dict[int, tuple[bool, int]] = {}
    for r in results:
        reset, n = out.get(r.campaign_id, (False, 0))
        if r.state == SENT:
            out[r.campaign_id] = (True, 0)
        elif is_site_failure(r):
            out[r.campaign_id] = (reset, n + 1)
        else:
            out.setdefault(r.campaign_id, (reset, n))
    return {cid: change for cid, change in out.items() if change != (False, 0)}


class LocalStreak:
    """This engine's own consecutive site failures per campaign, counted as each outcome is
    decided. The shared count moves only after a batch is written, and a fast lane (a block
    at MAIL FROM answers in a millisecond) can burn through a list meanwhile: reaching the
    limit here pauses at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[int, int] = {}

    def add(self, result: Result) -> int:
        """The count if this outcome reaches the limit, else 0."""
        cid = result.campaign_id
        if result.state == SENT:
            self.counts[cid] = 0
        elif self.limit and is_site_failure(result):
            self.counts[cid] = self.counts.get(cid, 0) + 1
            return self.counts[cid] if self.counts[cid] >= self.limit else 0
        return 0


def pause_reason(count: int) -> str:
    """The reason ``campaigns show`` and ``campaigns status`` print for an auto-pause."""
    return (
        f"paused after {count} consecutive connection, TLS or policy failures; "
        "check the readiness report and the last replies, then resume"
    )
