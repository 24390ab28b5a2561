"""The named queries of the durable queue: enqueue, claim, renew, record, finish.

Each is one short transaction, written for both SQLite and PostgreSQL:
- enqueue copies list members into ``deliveries`` in keyset batches; the unique
  (campaign, subscriber) key makes it idempotent; suppressed addresses become ``skipped``.
- claim moves due rows to ``sending`` under a lease (owner, lease_until). ``next_attempt_at``
  of a claimed row is set to its lease expiry, so "due" is one condition for every state:
  a crashed worker's rows simply come due again. PostgreSQL claims with
  ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers (BEGIN IMMEDIATE), which is enough.
- record writes a batch of outcomes; a row leaves ``sending`` only here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, text

from bulkmail.audience.addresses import address_key
from bulkmail.audience.forget import FORGOTTEN_PREFIX, hashed_key_sql
from bulkmail.bounces.escalate import DEFAULT_SOFT_LIMIT, SoftLimit, adds_up, escalations
from bulkmail.db.engine import Database
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    CANCELLED,
    DEFERRED,
    QUEUED,
    RUNNING,
    SENDING,
    SENT,
    SKIPPED,
    SUBSCRIBED,
)
from bulkmail.webhooks import outbox

ENQUEUE_BATCH = 20000
NEVER = 1e18  # an ``alive_since`` no heartbeat reaches: judge by the lease alone


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt, with what composition needs."""

    id: int
    campaign_id: int
    subscriber_id: int
    email: str
    domain: str
    attempts: int  # including this one
    first_attempt_at: float
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """The outcome of one attempt, ready to be written."""

    delivery_id: int
    campaign_id: int
    subscriber_id: int
    email: str
    state: str
    attempt: int
    next_attempt_at: float | None
    code: int | None
    enhanced: str | None
    text: str | None
    mx_host: str | None
    tls: str | None
    event: str | None  # kind of event to append, or None
    suppress: bool = False
    tls_version: str | None = None  # migration 0006: the TLS of this attempt
    tls_authenticated: bool | None = None
    tls_auth: str | None = None  # none | pkix | mta-sts | dane
    tls_failure: str | None = None  # a policy in mode testing not met


def enqueue(
    db: Database, campaign_id: int, list_id: int, now: float, batch: int = ENQUEUE_BATCH
) -> int:
    """Create the campaign's deliveries from the list's subscribed members; returns rows added.

    A suppression matches by the member's address key, or (only when some address was
    forgotten, so other sends pay nothing) by its hash (``audience.forget``)."""
    x_id, x_reason, forgotten = "x.id", "x.reason", ""
    with db.session() as s:
        if s.execute(text(_ANY_FORGOTTEN)).first() is not None:
            x_id, x_reason = "COALESCE(x.id, xh.id)", "COALESCE(x.reason, xh.reason)"
            hashed = hashed_key_sql("s.email_key", db.sqlite)
            forgotten = f"LEFT JOIN suppressions xh ON xh.email_key = {hashed}"
    sql = text(f"""
        INSERT INTO deliveries (campaign_id, subscriber_id, email, domain, state, attempts,
                                next_attempt_at, created_at, updated_at, last_text)
        SELECT :cid, s.id, s.email, s.domain,
               CASE WHEN {x_id} IS NULL THEN '{QUEUED}' ELSE '{SKIPPED}' END, 0, :now, :now, :now,
               CASE WHEN {x_id} IS NULL THEN NULL ELSE 'suppressed: ' || {x_reason} END
        FROM memberships m
        JOIN subscribers s ON s.id = m.subscriber_id
        LEFT JOIN suppressions x ON x.email_key = s.email_key
        {forgotten}
        WHERE m.list_id = :lid AND m.status = '{SUBSCRIBED}' AND m.subscriber_id > :after
          AND m.subscriber_id <= :upto
        ON CONFLICT (campaign_id, subscriber_id) DO NOTHING
    """)
    bounds = text("""
        SELECT subscriber_id FROM memberships
        WHERE list_id = :lid AND subscriber_id > :after
        ORDER BY subscriber_id LIMIT 1 OFFSET :skip
    """)
    added, after = 0, 0
    while True:
        with db.session() as s:
            upto = s.execute(bounds, {"lid": list_id, "after": after, "skip": batch - 1}).scalar()
            last = upto if upto is not None else 2**62
            res = cast(
                CursorResult[Any],
                s.execute(
                    sql,
                    {"cid": campaign_id, "lid": list_id, "after": after, "upto": last, "now": now},
                ),
            )
            added += max(res.rowcount or 0, 0)
        if upto is None:
            return added
        after = upto


_CLAIM_FIELDS = "id, campaign_id, subscriber_id, email, domain, attempts, first_attempt_at"


def claim(
    db: Database,
    campaign_ids: Sequence[int],
    owner: str,
    now: float,
    lease: float,
    limit: int,
    exclude_domains: Iterable[str] = (),
    alive_since: float | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries of the campaigns for ``owner``.

    A row in ``sending`` whose lease lapsed is taken over only if its holder has not written a
    heartbeat since ``alive_since``: a live engine that is merely late to renew (a loaded
    machine) keeps its rows, so nothing it is sending or has sent goes out twice. Dead
    holders' rows are made due at once by ``control.reclaim``."""
    if not campaign_ids or limit <= 0:
        return []
    excluded = sorted(set(exclude_domains))
    skip = "AND domain NOT IN :excluded" if excluded else ""
    holder_gone = (
        "AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.owner = deliveries.lease_owner"
        " AND w.seen_at >= :alive)"
    )
    lock = "FOR UPDATE SKIP LOCKED" if not db.sqlite else ""
    claimed: list[Any] = []
    with db.session() as s:
        # One index range scan per state (see ix_deliveries_due), oldest due first.
        for state in (SENDING, DEFERRED, QUEUED):
            want = limit - len(claimed)
            if want <= 0:
                break
            stmt = text(f"""
                UPDATE deliveries SET state = '{SENDING}', lease_owner = :owner,
                       lease_until = :until, next_attempt_at = :until,
                       attempts = attempts + 1,
                       first_attempt_at = COALESCE(first_attempt_at, :now), updated_at = :now
                WHERE id IN (
                    SELECT id FROM deliveries
                    WHERE campaign_id IN :cids AND state = :state AND next_attempt_at <= :now {skip}
                      {holder_gone if state == SENDING else ""}
                      AND campaign_id IN (SELECT id FROM campaigns WHERE state = '{RUNNING}')
                    ORDER BY next_attempt_at LIMIT :want {lock})
                RETURNING {_CLAIM_FIELDS}
            """).bindparams(bindparam("cids", expanding=True))
            params: dict[str, Any] = {
                "owner": owner,
                "until": now + lease,
                "now": now,
                "cids": list(campaign_ids),
                "state": state,
                "want": want,
                "alive": NEVER if alive_since is None else alive_since,
            }
            if excluded:
                stmt = stmt.bindparams(bindparam("excluded", expanding=True))
                params["excluded"] = excluded
            claimed.extend(s.execute(stmt, params).all())
        if not claimed:
            return []
        gone = _skip_opted_out(s, [r.id for r in claimed], now)
        claimed = [r for r in claimed if r.id not in gone]
        if not claimed:
            return []
        people = {
            row[0]: (row[1], row[2])
            for row in s.execute(
                text("SELECT id, name, attributes FROM subscribers WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": [r.subscriber_id for r in claimed]},
            ).all()
        }
    out = []
    for r in claimed:
        name, attrs = people.get(r.subscriber_id, ("", {}))
        if isinstance(attrs, str):  # JSON comes back as text through text() on SQLite
            attrs = json.loads(attrs)
        out.append(
            Claimed(
                r.id,
                r.campaign_id,
                r.subscriber_id,
                r.email,
                r.domain,
                r.attempts,
                r.first_attempt_at,
                name or "",
                attrs or {},
            )
        )
    return out


# The delivery's address is suppressed: compared by key (case-insensitive), through the
# subscriber's key, as enqueue compares it, or by the key's hash (a forgotten address).
_SUPPRESSED = """SELECT 1 FROM suppressions x JOIN subscribers sk
                 ON x.email_key IN (sk.email_key, {hashed})
                 WHERE sk.id = deliveries.subscriber_id"""
_ANY_FORGOTTEN = f"SELECT 1 FROM suppressions WHERE email_key LIKE '{FORGOTTEN_PREFIX}%' LIMIT 1"


def _skip_opted_out(session: Any, ids: list[int], now: float) -> set[int]:
    """Claimed rows whose address was suppressed, or whose member unsubscribed, since enqueue:
    they become ``skipped`` here, before any attempt."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    suppressed = _SUPPRESSED.format(hashed=hashed_key_sql("sk.email_key", sqlite))
    rows = session.execute(
        text(f"""
            UPDATE deliveries SET state = '{SKIPPED}', lease_owner = NULL, lease_until = NULL,
                   attempts = attempts - 1, updated_at = :now, finished_at = :now,
                   last_text = CASE WHEN EXISTS ({suppressed}) THEN 'suppressed'
                                    ELSE 'unsubscribed' END
            WHERE id IN :ids AND (
                EXISTS ({suppressed})
                OR EXISTS (SELECT 1 FROM memberships m JOIN campaigns c ON c.list_id = m.list_id
                           WHERE c.id = deliveries.campaign_id
                             AND m.subscriber_id = deliveries.subscriber_id
                             AND m.status <> '{SUBSCRIBED}'))
            RETURNING id""").bindparams(bindparam("ids", expanding=True)),
        {"ids": ids, "now": now},
    ).all()
    return {r[0] for r in rows}


def renew(db: Database, owner: str, ids: Sequence[int], now: float, lease: float) -> set[int]:
    """Extend the lease of rows this owner still holds; returns the ids it still holds.

    A row missing from the answer was lost: its lease lapsed and another engine claimed it,
    or it was recorded meanwhile (a ``sent`` from a slower engine). Its holder must drop it,
    never send it (issue 12: three copies under load when this answered nothing)."""
    if not ids:
        return set()
    with db.session() as s:
        rows = s.execute(
            text(f"""UPDATE deliveries SET lease_until = :until, next_attempt_at = :until
                     WHERE id IN :ids AND lease_owner = :owner
                       AND state = '{SENDING}' RETURNING id""").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"until": now + lease, "ids": list(ids), "owner": owner},
        ).all()
    return {r[0] for r in rows}


def release(
    db: Database, owner: str, ids: Sequence[int], now: float, until: float | None = None
) -> None:
    """Give claimed, never-attempted rows back: due now (or at ``until``, for a site that
    traffic shaping holds back), the claim's attempt not counted."""
    if not ids:
        return
    with db.session() as s:
        s.execute(
            text(f"""UPDATE deliveries
                     SET state = CASE
                           WHEN (SELECT c.state FROM campaigns c
                                 WHERE c.id = deliveries.campaign_id) = '{CAMPAIGN_CANCELLED}'
                             THEN '{CANCELLED}'
                           WHEN attempts > 1 THEN '{DEFERRED}' ELSE '{QUEUED}' END,
                         first_attempt_at = CASE WHEN attempts > 1 THEN first_attempt_at END,
                         attempts = attempts - 1, next_attempt_at = :until,
                         lease_owner = NULL, lease_until = NULL, updated_at = :now
                     WHERE id IN :ids AND lease_owner = :owner
                       AND state = '{SENDING}'""").bindparams(bindparam("ids", expanding=True)),
            {
                "now": now,
                "until": now if until is None else until,
                "ids": list(ids),
                "owner": owner,
            },
        )


_RECORD = f"""
    UPDATE deliveries SET
           state = CASE WHEN :state = '{DEFERRED}' AND (SELECT c.state FROM campaigns c
                             WHERE c.id = deliveries.campaign_id) = '{CAMPAIGN_CANCELLED}'
                        THEN '{CANCELLED}' ELSE :state END,
           next_attempt_at = COALESCE(:next_at, next_attempt_at),
           lease_owner = NULL, lease_until = NULL, last_code = :code, last_enhanced = :enhanced,
           last_text = :text, mx_host = :mx_host, tls = :tls, updated_at = :now,
           tls_version = :tls_version, tls_authenticated = :tls_authenticated,
           tls_auth = :tls_auth, tls_failure = :tls_failure,
           finished_at = CASE WHEN :final THEN :now ELSE NULL END
    WHERE id = :id AND {{}}
"""
# A "sent" answer is the truth even if our lease lapsed meanwhile (the row may have been
# reclaimed, or its campaign cancelled); any other outcome may only replace the attempt it
# answers: the row must still be in "sending" under our lease.
_RECORD_SENT = text(
    _RECORD.format(f"state IN ('{SENDING}', '{QUEUED}', '{DEFERRED}', '{CANCELLED}')")
)
_RECORD_OTHER = text(
    _RECORD.format(f"state = '{SENDING}' AND lease_owner = COALESCE(:owner, lease_owner)")
)


def record(
    db: Database,
    results: Sequence[Result],
    now: float,
    owner: str | None = None,
    soft_limit: SoftLimit = DEFAULT_SOFT_LIMIT,
) -> None:
    """Write a batch of outcomes, their events and the suppressions they cause, among them
    soft bounces that add up (``bounces.escalate``): a full or inactive mailbox answered at
    SMTP time counts like one a DSN reports, checked once per batch that has any."""
    if not results:
        return
    rows = [
        {
            "id": r.delivery_id,
            "state": r.state,
            "next_at": r.next_attempt_at,
            "code": r.code,
            "enhanced": r.enhanced,
            "text": r.text,
            "mx_host": r.mx_host,
            "tls": r.tls,
            "tls_version": r.tls_version,
            "tls_authenticated": r.tls_authenticated,
            "tls_auth": r.tls_auth,
            "tls_failure": r.tls_failure,
            "now": now,
            "final": r.state != DEFERRED,
        }
        for r in results
    ]
    sent = [row for row in rows if row["state"] == SENT]
    other = [{**row, "owner": owner} for row in rows if row["state"] != SENT]
    events = [
        {
            "kind": r.event,
            "campaign_id": r.campaign_id,
            "delivery_id": r.delivery_id,
            "subscriber_id": r.subscriber_id,
            "email": r.email,
            "code": r.code,
            "enhanced": r.enhanced,
            "text": r.text,
            "mx_host": r.mx_host,
            "attempt": r.attempt,
            "source": "engine",
            "created_at": now,
        }
        for r in results
        if r.event
    ]
    suppress = {r.email: r for r in results if r.suppress}
    soft = {
        r.email
        for r in results
        if r.event in ("deferred", "bounced", "soft_bounce")
        and r.email not in suppress
        and adds_up(r.code, r.enhanced, r.text or "")
    }
    with db.session() as s:
        if sent:
            s.execute(_RECORD_SENT, sent)
        if other:
            s.execute(_RECORD_OTHER, other)
        if events:
            s.execute(
                text("""
                INSERT INTO events (kind, campaign_id, delivery_id, subscriber_id, email, code,
                                    enhanced, text, mx_host, attempt, source, created_at)
                VALUES (:kind, :campaign_id, :delivery_id, :subscriber_id, :email, :code,
                        :enhanced, :text, :mx_host, :attempt, :source, :created_at)"""),
                events,
            )
            outbox.add_delivery_events(s, events, now)
        if suppress:
            add_suppressions(
                s,
                [
                    (e, f"{r.code} {r.enhanced or ''} {r.text or ''}".strip(), "bounce")
                    for e, r in suppress.items()
                ],
                now,
            )
        if soft and (escalated := escalations(s, soft, now, soft_limit)):
            add_suppressions(s, [(e, why, "bounce") for e, why in escalated.items()], now)


def add_suppressions(session: Any, entries: Sequence[tuple[str, str, str]], now: float) -> None:
    """Insert (email, reason, source) suppressions; an existing entry (same address in any
    case) is kept as it is. ``email`` is a stored delivery form (a delivery's address)."""
    session.execute(
        text("""INSERT INTO suppressions (email, email_key, reason, source, created_at)
                VALUES (:email, :key, :reason, :source, :now)
                ON CONFLICT (email_key) DO NOTHING"""),
        [
            {"email": e, "key": address_key(e), "reason": reason[:1000], "source": src, "now": now}
            for e, reason, src in entries
        ],
    )


def pending(db: Database, campaign_id: int) -> tuple[int, float | None]:
    """(deliveries not final, the earliest next_attempt_at among them)."""
    with db.session() as s:
        row = s.execute(
            text(f"""
            SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries
            WHERE campaign_id = :cid AND state IN ('{QUEUED}', '{SENDING}', '{DEFERRED}')
        """),
            {"cid": campaign_id},
        ).one()
    return int(row[0]), row[1]


def mark_enqueued(db: Database, campaign_id: int) -> None:
    with db.session() as s:
        s.execute(
            text("UPDATE campaigns SET enqueued = :t WHERE id = :id"),
            {"t": True, "id": campaign_id},
        )
