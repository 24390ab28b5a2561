"""Campaign states and destination-site leases: the queries behind scheduling and the fleet.

Campaign transitions are conditional UPDATEs (``WHERE state IN (...)``), so when several
processes race to start, pause or finish a campaign exactly one of them makes the change and
the others see that they did not.

A destination site's ``connections`` are slots ("<site>|0", "<site>|1", ...), each leased to
at most one process: a process opens a session only on a slot it holds, so ``connections``
(and, shared out per slot, ``rate``) hold for the whole fleet. A slot is taken with one
INSERT ... ON CONFLICT DO UPDATE that succeeds only when it is free, expired or ours, renewed
while the holder works, and simply expires when the holder dies. Engines send a heartbeat
(``workers``) so each takes a fair share of a busy site's slots instead of the first one
taking them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, text

from bulkmail.db.engine import Database
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    CANCELLED,
    DEFERRED,
    FINISHED,
    QUEUED,
    RUNNING,
    SCHEDULED,
    SENDING,
)
from bulkmail.webhooks import outbox


def transition(
    db: Database,
    campaign_id: int,
    to: str,
    now: float,
    *,
    from_states: Sequence[str] | None = None,
    reason: str = "",
) -> bool:
    """Move a campaign to ``to`` (only from ``from_states`` if given); True if it moved."""
    extra = ""
    if to == RUNNING:  # started or resumed: a fresh failure streak
        extra = ", started_at = COALESCE(started_at, :now), finished_at = NULL, failure_streak = 0"
    elif to in (FINISHED, CAMPAIGN_CANCELLED):
        extra = ", finished_at = :now"
    where = "id = :id AND state <> :state"
    stmt = text(
        f"UPDATE campaigns SET state = :state, state_reason = :reason {extra} "
        f"WHERE {where}" + (" AND state IN :from_states" if from_states else "")
    )
    params: dict[str, object] = {"state": to, "reason": reason, "now": now, "id": campaign_id}
    if from_states:
        stmt = stmt.bindparams(bindparam("from_states", expanding=True))
        params["from_states"] = list(from_states)
    with db.session() as s:
        res = cast(CursorResult[Any], s.execute(stmt, params))
        moved = (res.rowcount or 0) > 0
        if moved:
            change = {"campaign_id": campaign_id, "state": to, "reason": reason}
            outbox.add(s, f"campaign.{to}", [change], now)
        return moved


def count_failures(db: Database, changes: dict[int, tuple[bool, int]]) -> dict[int, int]:
    """Apply ``autopause.streak_changes`` (campaign -> (reset, failures after it)) to the
    campaigns' shared failure streaks; returns each campaign's streak now.

    Most batches only reset a streak that is 0 already: that UPDATE matches no row, so on
    PostgreSQL it locks nothing and a fleet's engines do not queue on the campaign row."""
    out = {}
    with db.session() as s:
        for cid, (reset, n) in sorted(changes.items()):
            if reset and n == 0:
                s.execute(
                    text(
                        "UPDATE campaigns SET failure_streak = 0"
                        " WHERE id = :id AND failure_streak <> 0"
                    ),
                    {"id": cid},
                )
                out[cid] = 0
                continue
            out[cid] = int(
                s.execute(
                    text(
                        "UPDATE campaigns SET failure_streak = CASE WHEN :reset THEN :n"
                        " ELSE failure_streak + :n END WHERE id = :id RETURNING failure_streak"
                    ),
                    {"reset": reset, "n": n, "id": cid},
                ).scalar_one_or_none()
                or 0
            )
    return out


def campaigns_in(
    db: Database, states: Sequence[str], among: Sequence[int] | None = None
) -> list[int]:
    """Ids of campaigns in one of ``states`` (optionally only among the given ids)."""
    stmt = text(
        "SELECT id FROM campaigns WHERE state IN :states"
        + (" AND id IN :among" if among is not None else "")
        + " ORDER BY id"
    )
    stmt = stmt.bindparams(bindparam("states", expanding=True))
    params: dict[str, object] = {"states": list(states)}
    if among is not None:
        if not among:
            return []
        stmt = stmt.bindparams(bindparam("among", expanding=True))
        params["among"] = list(among)
    with db.session() as s:
        return [r[0] for r in s.execute(stmt, params).all()]


def due_scheduled(db: Database, now: float) -> list[tuple[int, float]]:
    """(id, scheduled_at) of scheduled campaigns whose time has come."""
    with db.session() as s:
        rows = s.execute(
            text(
                f"SELECT id, scheduled_at FROM campaigns WHERE state = '{SCHEDULED}'"
                " AND scheduled_at <= :now ORDER BY scheduled_at"
            ),
            {"now": now},
        )
        return [(r[0], r[1]) for r in rows.all()]


def set_schedule(db: Database, campaign_id: int, at: float | None) -> None:
    with db.session() as s:
        s.execute(
            text("UPDATE campaigns SET scheduled_at = :at WHERE id = :id"),
            {"at": at, "id": campaign_id},
        )


def cancel_pending(db: Database, campaign_id: int, now: float) -> int:
    """Cancel every delivery of the campaign not yet attempted or waiting for a retry."""
    with db.session() as s:
        res = s.execute(
            text(f"""
            UPDATE deliveries SET state = '{CANCELLED}', updated_at = :now, finished_at = :now,
                   lease_owner = NULL, lease_until = NULL
            WHERE campaign_id = :id AND (state IN ('{QUEUED}', '{DEFERRED}')
                   OR (state = '{SENDING}' AND lease_until < :now))"""),
            {"id": campaign_id, "now": now},
        )
        return cast(CursorResult[Any], res).rowcount or 0


def heartbeat(db: Database, owner: str, now: float, window: float) -> int:
    """Record that ``owner`` is alive; returns how many engines were alive within ``window``."""
    with db.session() as s:
        s.execute(
            text("""
            INSERT INTO workers (owner, seen_at, started_at) VALUES (:owner, :now, :now)
            ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at"""),
            {"owner": owner, "now": now},
        )
        live = s.execute(
            text("SELECT COUNT(*) FROM workers WHERE seen_at >= :since"), {"since": now - window}
        ).scalar_one()
        s.execute(text("DELETE FROM workers WHERE seen_at < :old"), {"old": now - 3600})
    return max(1, int(live))


def forget_worker(db: Database, owner: str) -> None:
    """An engine going away: its heartbeat and every slot it still holds."""
    with db.session() as s:
        s.execute(text("DELETE FROM workers WHERE owner = :owner"), {"owner": owner})
        s.execute(text("DELETE FROM site_leases WHERE owner = :owner"), {"owner": owner})


def lease_holders(db: Database) -> tuple[set[str], dict[str, float]]:
    """(owners holding row or slot leases, lapsed or not, and every engine's last heartbeat):
    what ``delivery.owners.dead_owners`` judges. A lapsed lease counts too: its holder's fresh
    heartbeat would keep it (``queries.claim``) although the process is gone. Both scans are
    small: ``ix_deliveries_state_due`` covers the rows in ``sending``."""
    with db.session() as s:
        rows = s.execute(
            text(
                f"SELECT DISTINCT lease_owner FROM deliveries WHERE state = '{SENDING}'"
                " AND lease_owner IS NOT NULL UNION SELECT DISTINCT owner FROM site_leases"
            )
        ).all()
        seen = s.execute(text("SELECT owner, seen_at FROM workers")).all()
    return {r[0] for r in rows}, {r[0]: r[1] for r in seen}


def reclaim(db: Database, owners: Sequence[str], now: float) -> int:
    """End every lease of dead ``owners`` now: their rows come due at once (the claim takes
    them like any lapsed lease) and their slots are free; returns the rows reclaimed."""
    if not owners:
        return 0
    with db.session() as s:
        res = s.execute(
            text(
                f"UPDATE deliveries SET lease_until = :now, next_attempt_at = :now"
                f" WHERE state = '{SENDING}' AND lease_owner IN :owners"
            ).bindparams(bindparam("owners", expanding=True)),
            {"now": now, "owners": list(owners)},
        )
        for table, column in (("site_leases", "owner"), ("workers", "owner")):
            s.execute(
                text(f"DELETE FROM {table} WHERE {column} IN :owners").bindparams(
                    bindparam("owners", expanding=True)
                ),
                {"owners": list(owners)},
            )
        return cast(CursorResult[Any], res).rowcount or 0


def slot_keys(site: str, connections: int) -> list[str]:
    """The lease keys of a site's connection slots: "<site>|0" .. "<site>|<connections-1>"
    (a long site name, many long MX names, is replaced by its SHA-256 prefix)."""
    if len(site) > 200:
        site = "sha256:" + hashlib.sha256(site.encode()).hexdigest()[:32]
    return [f"{site}|{k}" for k in range(connections)]


_TAKE_SLOT = text("""
    INSERT INTO site_leases (site, owner, lease_until) VALUES (:key, :owner, :until)
    ON CONFLICT (site) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
    WHERE site_leases.owner = excluded.owner OR (site_leases.lease_until < :now
          AND NOT EXISTS (SELECT 1 FROM workers w
                          WHERE w.owner = site_leases.owner AND w.seen_at >= :alive))
    RETURNING site""")


def acquire_slots(
    db: Database,
    site: str,
    connections: int,
    owner: str,
    want: int,
    now: float,
    lease: float,
    alive_since: float = 1e18,
) -> set[str]:
    """Hold up to ``want`` of the site's connection slots; returns the keys ``owner`` holds.

    Each slot is one row; taking one succeeds only if it is free, already ours, or expired
    with a holder that has written no heartbeat since ``alive_since`` (a live holder late to
    renew keeps it), so two processes never hold the same slot, and all of them together
    never hold more than ``connections``."""
    keys = slot_keys(site, connections)
    with db.session() as s:
        rows = s.execute(
            text("SELECT site, owner, lease_until FROM site_leases WHERE site IN :k").bindparams(
                bindparam("k", expanding=True)
            ),
            {"k": keys},
        ).all()
        taken = {r[0]: (r[1], r[2]) for r in rows}
        held = {k for k, (o, until) in taken.items() if o == owner and until >= now}
        free = [k for k in keys if k not in taken or taken[k][1] < now]
        for key in free:
            if len(held) >= want:
                break
            if (
                s.execute(
                    _TAKE_SLOT,
                    {
                        "key": key,
                        "owner": owner,
                        "until": now + lease,
                        "now": now,
                        "alive": alive_since,
                    },
                ).first()
                is not None
            ):
                held.add(key)
    return held


def renew_slots(db: Database, owner: str, now: float, lease: float) -> set[str]:
    """Extend every slot ``owner`` holds; returns the keys it still holds."""
    with db.session() as s:
        rows = s.execute(
            text("UPDATE site_leases SET lease_until = :until WHERE owner = :owner RETURNING site"),
            {"until": now + lease, "owner": owner},
        ).all()
    return {r[0] for r in rows}


def release_slots(db: Database, owner: str, keys: Sequence[str]) -> None:
    if not keys:
        return
    with db.session() as s:
        s.execute(
            text("DELETE FROM site_leases WHERE site IN :keys AND owner = :owner").bindparams(
                bindparam("keys", expanding=True)
            ),
            {"keys": list(keys), "owner": owner},
        )
