"""Unsubscribing a member from the list a campaign was sent to.

Every way of leaving a list (the RFC 8058 one-click POST, the confirmation page's button, a
``mailto:`` unsubscribe found by bounce processing) ends in :func:`unsubscribe`. It is
idempotent and safe under concurrent requests: the membership changes with one conditional
UPDATE, so of two simultaneous requests exactly one reports the change, and the
``unsubscribed`` event is written only by that one. ``dedupe_key`` (for example the
Message-ID of a mailto request) keeps a re-processed request from adding a second event.

An unsubscribe is per list, not global: it is the suppression list (``audience.suppressions``)
that stops every mail to an address. ``enqueue`` selects only ``subscribed`` members, so
every later campaign to the list skips the member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

from bulkmail.audience.addresses import address_key
from bulkmail.compose.tokens import parse_token
from bulkmail.db.engine import Database
from bulkmail.db.engine import now as clock
from bulkmail.db.models import SUBSCRIBED, UNSUBSCRIBED
from bulkmail.webhooks import outbox

__all__ = [
    "Target",
    "UnsubscribeOutcome",
    "find_target",
    "target_of_token",
    "unsubscribe",
    "unsubscribe_token",
]

EVENT_KIND = "unsubscribed"


@dataclass(frozen=True)
class Target:
    """Whom a token (campaign x subscriber) names, and their membership of the campaign's list."""

    campaign_id: int
    subscriber_id: int
    email: str
    list_id: int
    list_name: str
    subscribed: bool  # False when unsubscribed already, or never a member


@dataclass(frozen=True)
class UnsubscribeOutcome:
    """What an unsubscribe request did."""

    target: Target
    changed: bool  # the membership went from subscribed to unsubscribed by this request


_TARGET = text("""
    SELECT c.list_id, l.name, s.email, m.status
    FROM campaigns c
    JOIN lists l ON l.id = c.list_id
    JOIN subscribers s ON s.id = :sid
    LEFT JOIN memberships m ON m.list_id = c.list_id AND m.subscriber_id = s.id
    WHERE c.id = :cid
""")

_UNSUBSCRIBE = text(f"""
    UPDATE memberships SET status = '{UNSUBSCRIBED}', updated_at = :now
    WHERE list_id = :lid AND subscriber_id = :sid AND status <> '{UNSUBSCRIBED}'
""")

_EVENT = text("""
    INSERT INTO events (kind, campaign_id, subscriber_id, email, source, dedupe_key, created_at)
    VALUES (:kind, :cid, :sid, :email, :source, :key, :now)
    ON CONFLICT (dedupe_key) DO NOTHING
""")


# A subscriber row retired by migration 0003 (same address as an older row but for case; no
# key, no memberships) stands for the live row of its address: a link in mail sent to it
# must still unsubscribe the person.
_LIVE = text("""
    SELECT COALESCE((SELECT k.id FROM subscribers k WHERE k.email_key = :key), :sid)
""")


def _target(session: Session, campaign_id: int, subscriber_id: int) -> Target | None:
    retired = session.execute(
        text("SELECT email FROM subscribers WHERE id = :sid AND email_key IS NULL"),
        {"sid": subscriber_id},
    ).scalar()
    if retired is not None:
        subscriber_id = session.execute(
            _LIVE, {"key": address_key(retired), "sid": subscriber_id}
        ).scalar_one()
    row = session.execute(_TARGET, {"cid": campaign_id, "sid": subscriber_id}).first()
    if row is None:
        return None
    return Target(
        campaign_id, subscriber_id, row.email, row.list_id, row.name, row.status == SUBSCRIBED
    )


def find_target(db: Database, campaign_id: int, subscriber_id: int) -> Target | None:
    """The target of campaign x subscriber, or None when either does not exist. Reads only."""
    with db.session() as s:
        return _target(s, campaign_id, subscriber_id)


def target_of_token(db: Database, secret: bytes, token: str) -> Target | None:
    """The target a delivery token names; None for a forged, truncated or unknown token."""
    ids = parse_token(secret, token)
    return find_target(db, *ids) if ids is not None else None


def _unsubscribe(
    db: Database,
    campaign_id: int,
    subscriber_id: int,
    source: str,
    now: float | None,
    dedupe_key: str | None,
) -> UnsubscribeOutcome | None:
    stamp = clock() if now is None else now
    with db.session() as s:
        target = _target(s, campaign_id, subscriber_id)
        if target is None:
            return None
        res = cast(
            CursorResult[Any],
            s.execute(
                _UNSUBSCRIBE, {"lid": target.list_id, "sid": target.subscriber_id, "now": stamp}
            ),
        )
        changed = (res.rowcount or 0) > 0
        if changed:
            s.execute(
                _EVENT,
                {
                    "kind": EVENT_KIND,
                    "cid": campaign_id,
                    "sid": target.subscriber_id,
                    "email": target.email,
                    "source": source[:50],
                    "key": dedupe_key[:200] if dedupe_key else None,
                    "now": stamp,
                },
            )
            outbox.add(
                s,
                outbox.delivery_type(EVENT_KIND),
                [
                    {
                        "campaign_id": campaign_id,
                        "subscriber_id": target.subscriber_id,
                        "email": target.email,
                        "list_id": target.list_id,
                        "list": target.list_name,
                        "source": source[:50],
                    }
                ],
                stamp,
            )
    return UnsubscribeOutcome(target, changed)


def unsubscribe(
    db: Database,
    campaign_id: int,
    subscriber_id: int,
    source: str,
    now: float | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Unsubscribe the subscriber from the campaign's list; True if the membership changed.

    The ``unsubscribed`` event (campaign, subscriber, email, ``source``, ``dedupe_key``) is
    written when the membership changes; a repeat, or an event whose ``dedupe_key`` exists
    already, adds nothing and raises nothing. An unknown campaign or subscriber, or one who
    is not a member of the list, changes nothing (False).
    """
    outcome = _unsubscribe(db, campaign_id, subscriber_id, source, now, dedupe_key)
    return outcome is not None and outcome.changed


def unsubscribe_token(
    db: Database,
    secret: bytes,
    token: str,
    source: str,
    now: float | None = None,
    dedupe_key: str | None = None,
) -> UnsubscribeOutcome | None:
    """Unsubscribe whoever ``token`` names; None for a forged, truncated or unknown token."""
    ids = parse_token(secret, token)
    if ids is None:
        return None
    return _unsubscribe(db, ids[0], ids[1], source, now, dedupe_key)
