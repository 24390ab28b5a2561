"""List-health brakes, per campaign (issue 13 §6): complaints and hard bounces that say stop.

Gmail and Yahoo enforce a complaint rate of 0.3% (and warn from 0.1%); a hard-bounce rate of
several percent means a stale list. A campaign whose complaints reach ``complaint_rate`` of
its delivered messages (after ``complaint_min_delivered``), or whose hard bounces reach
``bounce_rate`` of its attempts (after ``bounce_min_attempts``), pauses with that reason, so
the operator's domain is protected before the providers act. ``bulkmail campaigns resume``
continues it. A rate of 0 turns that brake off.

Hard bounces are the deliveries in state ``bounced`` whose last reply is a recipient-fault
class (``delivery.taxonomy.SUPPRESSING``): a policy or spam block is not a stale list. The
brakes are evaluated after each ``bounces`` run for the campaigns it touched, and by every
sending engine every ``CHECK_SECONDS`` for the campaigns it sends (``Watch``), so a stale
list stops mid-send on its SMTP-time bounces instead of at the next ``bounces`` run.

A resumed campaign whose rate is still past a brake is paused again at the next check: to
go on anyway, raise the brake (or set it to 0) first. The reason says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from bulkmail.config import BounceSettings
from bulkmail.db import control
from bulkmail.db.engine import Database
from bulkmail.db.models import PAUSED, RUNNING
from bulkmail.delivery.taxonomy import SUPPRESSING, classify

if TYPE_CHECKING:
    from bulkmail.config import Settings

#: How often a sending engine evaluates the brakes of the campaigns it sends (seconds): two
#: aggregate queries per campaign, cheap next to sending, and soon enough for a stale list.
CHECK_SECONDS = 5.0


#: The ``[bounces]`` defaults: one place for the numbers, so a report shown without settings
#: judges by the same levels a send pauses at.
_DEFAULTS = BounceSettings()


@dataclass(frozen=True)
class Brakes:
    complaint_rate: float = _DEFAULTS.complaint_brake_rate
    complaint_warn_rate: float = _DEFAULTS.complaint_warn_rate
    complaint_min_delivered: int = _DEFAULTS.complaint_brake_min_delivered
    bounce_rate: float = _DEFAULTS.bounce_brake_rate
    bounce_min_attempts: int = _DEFAULTS.bounce_brake_min_attempts
    #: Shown as a warning only (no setting): mailbox providers start to distrust a sender
    #: whose hard bounces pass about 2%.
    bounce_warn_rate: float = 0.02


@dataclass(frozen=True)
class Health:
    """One campaign's counts so far."""

    delivered: int  # accepted by the receiver (sent, complained)
    attempted: int  # tried at least once, or finished
    complaints: int
    hard_bounces: int

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.delivered if self.delivered else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounces / self.attempted if self.attempted else 0.0


def brake(h: Health, b: Brakes) -> str | None:
    """The pause reason if a brake applies, else None (pure)."""
    if b.complaint_rate > 0 and h.delivered >= b.complaint_min_delivered:
        if h.complaint_rate >= b.complaint_rate:
            return (
                f"paused: complaint rate {h.complaint_rate:.2%} ({h.complaints} of "
                f"{h.delivered} delivered) reached the {b.complaint_rate:.2%} brake "
                "([bounces] complaint_brake_rate); Gmail and Yahoo enforce 0.3%. To send on "
                "anyway, raise the brake (0: off) and resume"
            )
    if b.bounce_rate > 0 and h.attempted >= b.bounce_min_attempts:
        if h.bounce_rate >= b.bounce_rate:
            return (
                f"paused: hard-bounce rate {h.bounce_rate:.2%} ({h.hard_bounces} of "
                f"{h.attempted} attempted) reached the {b.bounce_rate:.2%} brake "
                "([bounces] bounce_brake_rate): the list looks stale. To send on anyway, "
                "raise the brake (0: off) and resume"
            )
    return None


def warning(h: Health, b: Brakes) -> str | None:
    """A warning below the brake: the complaint rate is past the providers' warning level."""
    if h.delivered and b.complaint_warn_rate > 0 and h.complaint_rate >= b.complaint_warn_rate:
        return (
            f"complaint rate {h.complaint_rate:.2%} is past the {b.complaint_warn_rate:.2%} warning"
        )
    return None


def health(s: Any, campaign_id: int) -> Health:
    """Count one campaign's delivered, attempted, complained and hard-bounced deliveries."""
    return healths(s, campaign_id).get(campaign_id, Health(0, 0, 0, 0))


def healths(s: Any, campaign_id: int | None = None) -> dict[int, Health]:
    """``health`` of one campaign, or (None) of every campaign in two GROUP BY queries."""
    where = "WHERE campaign_id = :cid" if campaign_id is not None else ""
    and_where = "AND campaign_id = :cid" if campaign_id is not None else ""
    params = {"cid": campaign_id}
    rows = s.execute(
        text(
            "SELECT campaign_id, SUM(CASE WHEN state IN ('sent', 'complained') THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN attempts > 0 OR state IN ('sent', 'bounced', 'complained', "
            "'expired') THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN state = 'complained' THEN 1 ELSE 0 END) "
            f"FROM deliveries {where} GROUP BY campaign_id"
        ),
        params,
    ).all()
    hard: dict[int, int] = {}
    known: dict[tuple[Any, Any, Any], bool] = {}
    for cid, code, enhanced, reply, n in s.execute(
        text(
            "SELECT campaign_id, last_code, last_enhanced, last_text, COUNT(*) FROM deliveries "
            f"WHERE state = 'bounced' {and_where} "
            "GROUP BY campaign_id, last_code, last_enhanced, last_text"
        ),
        params,
    ):
        key = (code, enhanced, reply)
        if key not in known:
            known[key] = classify(code or 0, enhanced, (reply or "").lower()) in SUPPRESSING
        if known[key]:
            hard[cid] = hard.get(cid, 0) + int(n)
    return {
        int(cid): Health(int(d or 0), int(a or 0), int(c or 0), hard.get(cid, 0))
        for cid, d, a, c in rows
    }


def _level(rate: float, warn: float, limit: float) -> str:
    if limit > 0 and rate >= limit:
        return "brake"
    if warn > 0 and rate >= warn:
        return "warning"
    return "ok"


def figures(h: Health, b: Brakes) -> dict[str, Any]:
    """The list-health figures ``campaigns status``, ``report`` and ``list`` show (and their
    ``--json``): each rate with its warning level and brake, and a level: ok, warning (past
    the warning level) or brake (at or past the brake: paused once the sample is large
    enough, ``*_min_*``)."""
    return {
        "delivered": h.delivered,
        "complaints": h.complaints,
        "complaint_rate": round(h.complaint_rate, 6),
        "complaint_warn_rate": b.complaint_warn_rate,
        "complaint_brake_rate": b.complaint_rate,
        "complaint_min_delivered": b.complaint_min_delivered,
        "complaint_level": _level(h.complaint_rate, b.complaint_warn_rate, b.complaint_rate),
        "attempted": h.attempted,
        "hard_bounces": h.hard_bounces,
        "bounce_rate": round(h.bounce_rate, 6),
        "bounce_warn_rate": b.bounce_warn_rate,
        "bounce_brake_rate": b.bounce_rate,
        "bounce_min_attempts": b.bounce_min_attempts,
        "bounce_level": _level(h.bounce_rate, b.bounce_warn_rate, b.bounce_rate),
    }


def _limits(warn: float, limit: float, minimum: int, unit: str, sample: int) -> str:
    parts = [f"warn {warn:.2%}" if warn > 0 else "", f"brake {limit:.2%}" if limit > 0 else ""]
    said = ", ".join(p for p in parts if p) or "brake off"
    if limit > 0 and sample < minimum:
        said += f" from {minimum:,} {unit}"
    return said


def describe(f: dict[str, Any]) -> str:
    """``figures`` as one line for a person: "complaints 0.12% (3 of 2,500 delivered):
    WARNING (warn 0.10%, brake 0.30%); hard bounces 1.20% (30 of 2,500 attempted): ok
    (warn 2.00%, brake 5.00%)"."""
    complaints = (
        f"complaints {f['complaint_rate']:.2%} ({f['complaints']:,} of {f['delivered']:,} "
        f"delivered): {_shout(f['complaint_level'])} ("
        + _limits(
            f["complaint_warn_rate"],
            f["complaint_brake_rate"],
            f["complaint_min_delivered"],
            "delivered",
            f["delivered"],
        )
        + ")"
    )
    bounces = (
        f"hard bounces {f['bounce_rate']:.2%} ({f['hard_bounces']:,} of {f['attempted']:,} "
        f"attempted): {_shout(f['bounce_level'])} ("
        + _limits(
            f["bounce_warn_rate"],
            f["bounce_brake_rate"],
            f["bounce_min_attempts"],
            "attempted",
            f["attempted"],
        )
        + ")"
    )
    return f"{complaints}; {bounces}"


def _shout(level: str) -> str:
    return {"ok": "ok", "warning": "WARNING", "brake": "AT THE BRAKE"}[level]


def marked(rate: float, level: str) -> str:
    """A rate for a table column: "0.12%", with "!" past the warning level, "!!" at the brake."""
    return f"{rate:.2%}" + {"ok": "", "warning": "!", "brake": "!!"}[level]


def apply_brakes(
    db: Database, campaign_ids: set[int], brakes: Brakes, now: float
) -> list[tuple[int, str]]:
    """Pause each running campaign of ``campaign_ids`` a brake applies to: (id, reason)."""
    paused = []
    for cid in sorted(campaign_ids):
        with db.session() as s:
            state = s.execute(
                text("SELECT state FROM campaigns WHERE id = :cid"), {"cid": cid}
            ).scalar()
            if state != RUNNING:
                continue
            reason = brake(health(s, cid), brakes)
        if reason and control.transition(
            db, cid, PAUSED, now, from_states=[RUNNING], reason=reason
        ):
            paused.append((cid, reason))
    return paused


def from_settings(settings: Settings) -> Brakes:
    """The ``[bounces]`` brake settings."""
    b = settings.bounces
    return Brakes(
        b.complaint_brake_rate,
        b.complaint_warn_rate,
        b.complaint_brake_min_delivered,
        b.bounce_brake_rate,
        b.bounce_brake_min_attempts,
    )


class Watch:
    """The brakes as a sending engine checks them: at most every ``CHECK_SECONDS``, and never
    more than 1/``SHARE`` of the time (the counting queries run on the engine's database
    thread, beside its claims and writes: a campaign of millions makes them slower)."""

    SHARE = 20

    def __init__(self, brakes: Brakes) -> None:
        self.brakes = brakes
        self.last = time.monotonic()
        self.period = CHECK_SECONDS

    def due(self, now: float) -> bool:
        """True (once per period) when the brakes should be checked; ``now`` is monotonic."""
        if now - self.last < max(CHECK_SECONDS, self.period):
            return False
        self.last = now
        return True

    def check(self, db: Database, campaign_ids: list[int]) -> list[int]:
        """Pause the running campaigns of ``campaign_ids`` a brake applies to; their ids."""
        if not campaign_ids:
            return []
        began = time.monotonic()
        paused = apply_brakes(db, set(campaign_ids), self.brakes, time.time())
        self.period = (time.monotonic() - began) * self.SHARE
        return [cid for cid, _ in paused]
