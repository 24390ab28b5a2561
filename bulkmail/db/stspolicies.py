"""The fleet's MTA-STS policy cache (table ``mta_sts_policies``, migration 0006).

One row per recipient domain: the last policy fetched, its TXT id and when it expires. Every
engine reads it before fetching, so a fleet fetches a policy once, and a restart or a policy
host that is down keeps a still-valid policy in force (RFC 8461 5.1). Plain SQL so both
dialects share one statement (INSERT ... ON CONFLICT works on SQLite and PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from bulkmail.db.engine import Database
from bulkmail.delivery.stspolicy import Policy

__all__ = ["CachedPolicy", "load_policies", "load_policy", "save_policy"]


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    """A stored policy: the id it was fetched under and its expiry (UNIX seconds)."""

    domain: str
    policy_id: str
    policy: Policy
    fetched_at: float
    expires_at: float


_SELECT = (
    "SELECT domain, policy_id, mode, mx, max_age, fetched_at, expires_at FROM mta_sts_policies"
)


def _cached(row: Any) -> CachedPolicy:
    mx = tuple(p for p in row.mx.split("\n") if p)
    policy = Policy(row.mode, mx, int(row.max_age))
    return CachedPolicy(row.domain, row.policy_id, policy, row.fetched_at, row.expires_at)


def load_policy(db: Database, domain: str) -> CachedPolicy | None:
    """The stored policy of ``domain`` (expired or not), or None."""
    with db.session() as s:
        row = s.execute(text(f"{_SELECT} WHERE domain = :d"), {"d": domain}).first()
    return None if row is None else _cached(row)


def load_policies(db: Database, now: float) -> dict[str, CachedPolicy]:
    """Every stored policy still valid at ``now``: read once when an engine starts, so a
    domain without MTA-STS costs no query at all (the table holds only domains with one)."""
    with db.session() as s:
        rows = s.execute(text(f"{_SELECT} WHERE expires_at > :now"), {"now": now}).all()
    return {row.domain: _cached(row) for row in rows}


def save_policy(db: Database, cached: CachedPolicy) -> None:
    """Store (or replace) the policy of ``cached.domain``."""
    p = cached.policy
    with db.session() as s:
        s.execute(
            text("""
                INSERT INTO mta_sts_policies
                       (domain, policy_id, mode, mx, max_age, fetched_at, expires_at)
                VALUES (:d, :id, :mode, :mx, :age, :fetched, :expires)
                ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id,
                       mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age,
                       fetched_at = excluded.fetched_at, expires_at = excluded.expires_at"""),
            {
                "d": cached.domain,
                "id": cached.policy_id,
                "mode": p.mode,
                "mx": "\n".join(p.mx),
                "age": p.max_age,
                "fetched": cached.fetched_at,
                "expires": cached.expires_at,
            },
        )
