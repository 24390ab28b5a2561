"""One line per campaign for ``campaigns list``: state, schedule, progress and rate.

Two GROUP BY queries for all campaigns at once (deliveries per campaign and state, and each
campaign's last ``finished_at``), so listing many campaigns costs the same as listing one.
The rate is deliveries finished per second over the send so far: from the campaign's
``started_at`` to its last finished delivery. COMPLAINTS and HARD are the list-health rates
(``bounces.brakes``): "!" past the warning level, "!!" at the brake.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text

from bulkmail.bounces.brakes import Brakes, Health, figures, healths, marked
from bulkmail.db.engine import Database
from bulkmail.db.models import FINAL_STATES, PENDING_STATES
from bulkmail.reports.model import format_rate
from bulkmail.reports.terminal import printable

_ATTEMPTED = ("sent", "complained", "bounced", "expired", "failed")


def campaign_lines(db: Database, limits: Brakes | None = None) -> list[dict[str, Any]]:
    """For each campaign, in id order: id, name, state, scheduled_at, started_at, finished_at,
    total, done, pending, progress (done/total, 0..1), the counts of sent, deferred, bounced,
    expired, failed, skipped, rate (finished deliveries per second, or None), and the
    list-health rates with their levels against ``limits`` (``bounces.brakes.figures``):
    complaint_rate, complaint_level, bounce_rate, bounce_level."""
    limits = limits or Brakes()
    with db.session() as s:
        health = healths(s)
        campaigns = s.execute(
            text(
                "SELECT id, name, state, scheduled_at, started_at, finished_at FROM campaigns "
                "ORDER BY id"
            )
        ).all()
        counts: dict[int, dict[str, int]] = {}
        for cid, state, n in s.execute(
            text("SELECT campaign_id, state, COUNT(*) FROM deliveries GROUP BY campaign_id, state")
        ).all():
            counts.setdefault(cid, {})[state] = int(n)
        last: dict[int, float] = {
            cid: t
            for cid, t in s.execute(
                text(
                    "SELECT campaign_id, MAX(finished_at) FROM deliveries "
                    "WHERE finished_at IS NOT NULL GROUP BY campaign_id"
                )
            ).all()
        }
    out = []
    for cid, name, state, scheduled_at, started_at, finished_at in campaigns:
        c = counts.get(cid, {})
        total = sum(c.values())
        done = sum(c.get(k, 0) for k in FINAL_STATES)
        attempted = sum(c.get(k, 0) for k in _ATTEMPTED)
        elapsed = (last[cid] - started_at) if cid in last and started_at is not None else None
        out.append(
            {
                "id": cid,
                "name": name,
                "state": state,
                "scheduled_at": scheduled_at,
                "started_at": started_at,
                "finished_at": finished_at,
                "total": total,
                "done": done,
                "pending": sum(c.get(k, 0) for k in PENDING_STATES),
                "progress": done / total if total else 0.0,
                **{
                    k: c.get(k, 0)
                    for k in ("sent", "deferred", "bounced", "expired", "failed", "skipped")
                },
                "rate": attempted / elapsed if elapsed and elapsed > 0 and attempted else None,
                **{
                    k: v
                    for k, v in figures(health.get(cid, Health(0, 0, 0, 0)), limits).items()
                    if k in ("complaint_rate", "complaint_level", "bounce_rate", "bounce_level")
                },
            }
        )
    return out


def format_time(t: float | None) -> str:
    """A stored UNIX time as "2025-05-01 09:00Z" (UTC), or "-"."""
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%MZ")


#: The counts ``campaigns list`` shows, each under its own heading (skipped and expired too).
COUNT_COLUMNS = ("sent", "deferred", "bounced", "expired", "failed", "skipped")
CAMPAIGN_HEADER = (
    f"{'ID':>4}  {'NAME':<24} {'STATE':<9} {'SCHEDULED':<17} {'DONE':<16}"
    + "".join(f" {k.upper():>8}" for k in COUNT_COLUMNS)
    + f"  {'RATE':<8} {'COMPLAINTS':>10} {'HARD':>7}"
)


def format_campaign_line(row: dict[str, Any]) -> str:
    """One ``campaign_lines`` row as a line of text under ``CAMPAIGN_HEADER``:
    ``   3  May news                 running   2025-05-01 09:00Z 120/200 (60%)  120 ...``."""
    done = f"{row['done']}/{row['total']} ({row['progress'] * 100:.0f}%)"
    return (
        f"{row['id']:>4}  {printable(row['name'])[:24]:<24} {row['state']:<9} "
        f"{format_time(row['scheduled_at']):<17} {done:<16}"
        + "".join(f" {row[k]:>8}" for k in COUNT_COLUMNS)
        + f"  {format_rate(row['rate']):<8} "
        + f"{marked(row['complaint_rate'], row['complaint_level']):>10} "
        + f"{marked(row['bounce_rate'], row['bounce_level']):>7}"
    )
