"""The outbox: events owed to webhook endpoints, written in the transaction of their change.

Each place that changes a delivery, a membership or a campaign calls :func:`add` with the
session it is writing in, so an event is in the outbox exactly when its change committed:
a crash can lose neither, and a rolled-back change sends nothing. :func:`add` does nothing
unless the session's database was opened with ``[webhooks] urls`` (``Database.outbox``),
so without webhooks the outbox stays empty and the hot path pays one dictionary look-up.

The sender (:mod:`bulkmail.webhooks.sender`) claims due rows under a lease with
``FOR UPDATE SKIP LOCKED`` (PostgreSQL), as the delivery queue does, so several senders can
run; a row is deleted only after its endpoint answered 2xx (at-least-once).

Event types: ``delivery.<kind>`` for the engine's and bounce processing's events (sent,
deferred, bounced, expired, failed, complained, soft_bounce, delayed),
``subscriber.unsubscribed``, and ``campaign.<state>`` for a campaign's new state.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text

from bulkmail.db.engine import Database

_DELIVERY_FIELDS = (
    "campaign_id",
    "delivery_id",
    "subscriber_id",
    "email",
    "code",
    "enhanced",
    "text",
    "mx_host",
    "attempt",
    "source",
)


@dataclass(frozen=True)
class Targets:
    """Where events go (``[webhooks] urls``) and which types (``events``; empty: all,
    ``campaign.*``: every type under ``campaign.``)."""

    endpoints: tuple[str, ...]
    events: tuple[str, ...] = ()

    def wants(self, kind: str) -> bool:
        if not self.events:
            return True
        return any(kind == e or (e.endswith(".*") and kind.startswith(e[:-1])) for e in self.events)


def enable(db: Database, settings: Any) -> Database:
    """Have ``db``'s sessions feed the outbox when ``settings`` configures webhooks."""
    hooks = settings.webhooks
    db.outbox = Targets(tuple(hooks.urls), tuple(hooks.events)) if hooks.urls else None
    return db


def delivery_type(kind: str) -> str:
    return "subscriber.unsubscribed" if kind == "unsubscribed" else f"delivery.{kind}"


def add(session: Any, kind: str, items: Iterable[Mapping[str, Any]], now: float) -> int:
    """Write one outbox row per event of type ``kind`` and endpoint, in ``session``'s
    transaction; returns the rows written (0 when webhooks are not configured)."""
    targets: Targets | None = session.info.get("outbox")
    if targets is None or not targets.wants(kind):
        return 0
    rows = []
    for item in items:
        event_id = "evt_" + uuid.uuid4().hex
        payload = json.dumps(
            {"id": event_id, "type": kind, "created_at": now, "data": dict(item)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for endpoint in targets.endpoints:
            rows.append(
                {"eid": event_id, "ep": endpoint, "kind": kind, "payload": payload, "now": now}
            )
    if rows:
        session.execute(_INSERT, rows)
    return len(rows)


def add_delivery_events(session: Any, events: Sequence[Mapping[str, Any]], now: float) -> int:
    """The events-table rows just written (``kind`` plus the delivery fields), as webhooks."""
    if session.info.get("outbox") is None:
        return 0
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        data = {f: e.get(f) for f in _DELIVERY_FIELDS if f in e}
        by_kind.setdefault(delivery_type(e["kind"]), []).append(data)
    return sum(add(session, kind, items, now) for kind, items in by_kind.items())


_INSERT = text("""
    INSERT INTO outbox (event_id, endpoint, kind, payload, created_at, next_attempt_at, attempts)
    VALUES (:eid, :ep, :kind, :payload, :now, :now, 0)
""")


@dataclass(frozen=True)
class Owed:
    """A claimed outbox row."""

    id: int
    event_id: str
    endpoint: str
    payload: str
    attempts: int
    created_at: float


def claim(
    db: Database, now: float, lease: float, limit: int, skip_endpoints: Iterable[str] = ()
) -> list[Owed]:
    """Up to ``limit`` due rows, oldest first, their ``next_attempt_at`` moved past ``lease``
    so that no other sender takes them meanwhile (and a crashed sender's come back)."""
    skip = sorted(set(skip_endpoints))
    where = "next_attempt_at <= :now" + (" AND endpoint NOT IN :skip" if skip else "")
    lock = "" if db.sqlite else "FOR UPDATE SKIP LOCKED"
    stmt = text(f"""
        UPDATE outbox SET next_attempt_at = :until
        WHERE id IN (SELECT id FROM outbox WHERE {where} ORDER BY id LIMIT :limit {lock})
        RETURNING id, event_id, endpoint, payload, attempts, created_at""")
    params: dict[str, Any] = {"now": now, "until": now + lease, "limit": limit}
    if skip:
        stmt = stmt.bindparams(bindparam("skip", expanding=True))
        params["skip"] = skip
    with db.session() as s:
        rows = s.execute(stmt, params).all()
    return sorted((Owed(*r) for r in rows), key=lambda o: o.id)


def delivered(db: Database, ids: Sequence[int]) -> None:
    """Forget rows their endpoint acknowledged."""
    if not ids:
        return
    with db.session() as s:
        s.execute(
            text("DELETE FROM outbox WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": list(ids)},
        )


def retry_later(db: Database, failures: Sequence[tuple[int, float, str]]) -> None:
    """(id, when, error) per failed row: one more attempt counted, due again at ``when``."""
    if not failures:
        return
    with db.session() as s:
        s.execute(
            text("""UPDATE outbox SET attempts = attempts + 1, next_attempt_at = :at,
                    last_error = :error WHERE id = :id"""),
            [{"id": i, "at": at, "error": err[:500]} for i, at, err in failures],
        )


def put_back(db: Database, ids: Sequence[int], now: float) -> None:
    """Claimed rows not attempted (the sender is stopping): due again now, no attempt counted."""
    if not ids:
        return
    with db.session() as s:
        s.execute(
            text("UPDATE outbox SET next_attempt_at = :now WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": list(ids), "now": now},
        )


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_created_at: float | None
    next_due_at: float | None


def backlog(db: Database) -> Backlog:
    """What is owed: rows, the oldest one's age (its id is the smallest: the primary key
    finds it), the next due time (``ix_outbox_due``). The table holds only pending rows."""
    with db.session() as s:
        n = s.execute(text("SELECT COUNT(*) FROM outbox")).scalar_one()
        oldest = s.execute(text("SELECT created_at FROM outbox ORDER BY id LIMIT 1")).scalar()
        due = s.execute(text("SELECT MIN(next_attempt_at) FROM outbox")).scalar()
    return Backlog(int(n), oldest, due)


def clock() -> float:
    return time.time()
