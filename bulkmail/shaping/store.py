"""Backoffs in the database (``site_actions``, migration 0008), so a fleet shares them.

``record`` writes an action and an event naming its rule (kind "backoff"); ``in_force`` reads
the unexpired ones; ``hold`` gives claimed rows back due when a suspension ends, without
counting the claim as an attempt (no retry step is spent on a site that asked us to wait).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text

from bulkmail.db import queries
from bulkmail.db.engine import Database
from bulkmail.delivery.classify import Reply
from bulkmail.shaping.backoff import Action

__all__ = ["described", "hold", "in_force", "record"]

EVENT_KIND = "backoff"


def record(
    db: Database,
    action: Action,
    reply: Reply,
    *,
    owner: str,
    now: float,
    campaign_id: int | None = None,
    delivery_id: int | None = None,
    mx_host: str | None = None,
) -> None:
    """Store ``action`` and an event saying which rule started it, for how long, and why."""
    what = action.kind
    if action.kind == "throttle":
        parts = [f"rate {action.rate:g}/s" if action.rate is not None else ""]
        parts.append(f"{action.connections} connections" if action.connections else "")
        what += " to " + ", ".join(p for p in parts if p)
    note = (
        f"rule {action.rule}: {what} site {action.site} for {action.until - now:.0f}s after {reply}"
    )
    with db.session() as s:
        s.execute(
            text("""INSERT INTO site_actions (site, rule, kind, rate, connections, reply, owner,
                                              created_at, until, recover_until)
                    VALUES (:site, :rule, :kind, :rate, :conns, :reply, :owner, :now, :until,
                            :recover)"""),
            {
                "site": action.site,
                "rule": action.rule,
                "kind": action.kind,
                "rate": action.rate,
                "conns": action.connections,
                "reply": str(reply)[:2000],
                "owner": owner,
                "now": now,
                "until": action.until,
                "recover": action.recover_until,
            },
        )
        s.execute(
            text("""INSERT INTO events (kind, campaign_id, delivery_id, code, enhanced, text,
                                        mx_host, source, created_at)
                    VALUES (:kind, :cid, :did, :code, :enhanced, :text, :mx, 'shaping', :now)"""),
            {
                "kind": EVENT_KIND,
                "cid": campaign_id,
                "did": delivery_id,
                "code": reply.code,
                "enhanced": reply.enhanced,
                "text": note[:4000],
                "mx": mx_host,
                "now": now,
            },
        )


def _actions(rows: Sequence[Sequence[object]]) -> list[Action]:
    return [
        Action(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            float(r[3]),  # type: ignore[arg-type]
            float(r[4]) if r[4] is not None else None,  # type: ignore[arg-type]
            int(r[5]) if r[5] is not None else None,  # type: ignore[call-overload]
            float(r[6]) if r[6] is not None else None,  # type: ignore[arg-type]
        )
        for r in rows
    ]


_COLUMNS = "site, rule, kind, until, rate, connections, recover_until"
_LASTS = "(until > :now OR recover_until > :now)"  # in force or still being undone


def in_force(db: Database, now: float) -> list[Action]:
    """Every action of the fleet in force or being undone."""
    with db.session() as s:
        rows = s.execute(
            text(f"SELECT {_COLUMNS} FROM site_actions WHERE {_LASTS} ORDER BY id"),
            {"now": now},
        ).all()
    return _actions(rows)


def described(db: Database, now: float) -> list[tuple[Action, str, float]]:
    """The unexpired actions with the reply that started each and when: (action, reply,
    started), for ``shaping explain`` and ``status``."""
    with db.session() as s:
        rows = s.execute(
            text(f"""SELECT {_COLUMNS}, reply, created_at FROM site_actions
                     WHERE {_LASTS} ORDER BY site, id"""),
            {"now": now},
        ).all()
    return [(a, str(r[7] or ""), float(r[8])) for a, r in zip(_actions(rows), rows, strict=True)]


def hold(db: Database, owner: str, ids: Sequence[int], until: float, now: float) -> None:
    """Give claimed rows back, due at ``until``, the claim's attempt not counted (as
    ``queries.release`` does, but not due at once)."""
    queries.release(db, owner, ids, now, until=until)
