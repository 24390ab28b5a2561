"""Campaign states and destination-site leases: the queries behind scheduling and the fleet.

Campaign transitions are conditional UPDATEs (``WHERE state IN (...)``), so when several
processes race to start, pause or finish a campaign exactly one of them makes the change and
the others see that they did not.

A site lease gives one process at a time the right to open sessions to a destination site,
so ``connections`` and ``rate`` hold for the whole fleet. It is taken with one
INSERT ... ON CONFLICT DO UPDATE that succeeds only when the lease is free, expired or ours,
renewed while the holder works, and simply expires when the holder dies.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, text

from bulkmail.db.engine import Database
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    CANCELLED,
    DEFERRED,
    FINISHED,
    QUEUED,
    RUNNING,
    SCHEDULED,
)


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
    if to == RUNNING:
        extra = ", started_at = COALESCE(started_at, :now), finished_at = NULL"
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
        return (s.execute(stmt, params).rowcount or 0) > 0


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
            WHERE campaign_id = :id AND state IN ('{QUEUED}', '{DEFERRED}')"""),
            {"id": campaign_id, "now": now},
        )
        return res.rowcount or 0


def acquire_site(db: Database, site: str, owner: str, now: float, lease: float) -> bool:
    """Take (or renew) the lease on ``site`` for ``owner``; False if another live holder has it."""
    with db.session() as s:
        row = s.execute(
            text("""
            INSERT INTO site_leases (site, owner, lease_until) VALUES (:site, :owner, :until)
            ON CONFLICT (site) DO UPDATE SET owner = excluded.owner,
                                             lease_until = excluded.lease_until
            WHERE site_leases.owner = excluded.owner OR site_leases.lease_until < :now
            RETURNING owner"""),
            {"site": site, "owner": owner, "until": now + lease, "now": now},
        )
        return row.first() is not None


def renew_sites(
    db: Database, sites: Sequence[str], owner: str, now: float, lease: float
) -> set[str]:
    """Extend our leases; returns the sites we still hold."""
    if not sites:
        return set()
    with db.session() as s:
        rows = s.execute(
            text("""
            UPDATE site_leases SET lease_until = :until
            WHERE site IN :sites AND owner = :owner RETURNING site""").bindparams(
                bindparam("sites", expanding=True)
            ),
            {"until": now + lease, "sites": list(sites), "owner": owner},
        ).all()
    return {r[0] for r in rows}


def release_sites(db: Database, sites: Sequence[str], owner: str) -> None:
    if not sites:
        return
    with db.session() as s:
        s.execute(
            text("DELETE FROM site_leases WHERE site IN :sites AND owner = :owner").bindparams(
                bindparam("sites", expanding=True)
            ),
            {"sites": list(sites), "owner": owner},
        )
