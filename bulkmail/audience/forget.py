"""Erasing a subscriber on request (GDPR art. 17), while never mailing them again.

Forgetting removes what identifies the person: the address, name and attributes on the
subscriber row, their memberships, the address (and reply texts, which often quote it) on
their deliveries and events, and any plain suppression of the address. What stays is one
suppression whose key is ``sha256:`` + the SHA-256 of the address key (``address_key``:
case-insensitive), so an import of the same address later, in any case, is still skipped at
enqueue and at claim (``db.queries`` matches the hash too). The subscriber row itself stays,
retired (``email_key`` NULL, never mailed), because past deliveries refer to it and the
campaign reports keep their counts. Rows that migration 0003 retired as case duplicates of
the address (``Ann@`` beside ``ann@``) are erased with it.

An unsalted hash of an address can be confirmed by someone who guesses the address; it cannot
be listed or reversed. A salt would need a secret that, rotated, would silently re-enable
mail to everyone forgotten before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from bulkmail.audience.addresses import address_key
from bulkmail.db.engine import Database, now
from bulkmail.db.models import (
    PENDING_STATES,
    SKIPPED,
    Delivery,
    Event,
    Membership,
    Subscriber,
    Suppression,
)
from bulkmail.errors import NotFoundError

FORGOTTEN_PREFIX = "sha256:"
FORGOTTEN_SOURCE = "forget"
FORGOTTEN_DOMAIN = "forgotten.invalid"  # RFC 2606: never resolves, never mailed


def forgotten_key(key: str) -> str:
    """The suppression key kept for a forgotten address (``key`` is its ``address_key``)."""
    return FORGOTTEN_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def hashed_key_sql(column: str, sqlite: bool) -> str:
    """SQL computing :func:`forgotten_key` of ``column`` (an address key) in the database.

    PostgreSQL has ``sha256`` built in; SQLite gets ``bulkmail_sha256`` from ``db.engine``."""
    if sqlite:
        return f"('{FORGOTTEN_PREFIX}' || bulkmail_sha256({column}))"
    return f"('{FORGOTTEN_PREFIX}' || encode(sha256(convert_to({column}, 'UTF8')), 'hex'))"


@dataclass(frozen=True)
class Forgotten:
    subscriber_id: int
    memberships: int  # removed
    deliveries: int  # anonymised (pending ones also skipped)
    events: int  # anonymised
    key: str  # the hashed suppression key kept

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def forget_subscriber(db: Database, email: str, stamp: float | None = None) -> Forgotten:
    """Erase the subscriber ``email`` (any case) in one transaction; keep a hashed suppression.

    Raises NotFoundError when no subscriber has that address (nothing is changed then)."""
    key = address_key(email)
    hashed = forgotten_key(key)
    at = now() if stamp is None else stamp
    with db.session() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email_key == key))
        if sub is None:
            raise NotFoundError(f"no subscriber {email!r} (see 'bulkmail subscribers list')")
        # Rows migration 0003 retired as case duplicates of this address hold it too.
        retired = s.scalars(
            select(Subscriber).where(
                Subscriber.email_key.is_(None), func.lower(Subscriber.email) == key
            )
        ).all()
        people = [sub, *(r for r in retired if address_key(r.email) == key)]
        ids, originals = [p.id for p in people], [p.email for p in people]
        memberships = s.execute(delete(Membership).where(Membership.subscriber_id.in_(ids)))
        s.execute(
            update(Delivery)
            .where(Delivery.subscriber_id.in_(ids), Delivery.state.in_(PENDING_STATES))
            .values(state=SKIPPED, finished_at=at, lease_owner=None, lease_until=None)
        )
        deliveries = 0
        for person in people:
            placeholder = f"forgotten-{person.id}@{FORGOTTEN_DOMAIN}"
            res = s.execute(
                update(Delivery)
                .where(Delivery.subscriber_id == person.id)
                .values(
                    email=placeholder, domain=FORGOTTEN_DOMAIN, last_text="forgotten", updated_at=at
                )
            )
            deliveries += cast(CursorResult[Any], res).rowcount or 0
            person.email, person.email_key, person.domain = placeholder, None, FORGOTTEN_DOMAIN
            person.name, person.attributes, person.updated_at = "", {}, at
        events = s.execute(
            update(Event)
            .where(Event.subscriber_id.in_(ids) | Event.email.in_(originals))
            .values(email=None, text=None)
        )
        _keep_hashed_suppression(s, key, hashed, at)
        return Forgotten(
            sub.id,
            cast(CursorResult[Any], memberships).rowcount or 0,
            deliveries,
            cast(CursorResult[Any], events).rowcount or 0,
            hashed,
        )


def _keep_hashed_suppression(s: Session, key: str, hashed: str, at: float) -> None:
    """Replace a plain suppression of the address (if any) by the hashed one."""
    s.execute(delete(Suppression).where(Suppression.email_key == key))
    if s.scalar(select(Suppression.id).where(Suppression.email_key == hashed)) is None:
        s.add(
            Suppression(
                email=hashed,
                email_key=hashed,
                reason="erased on request; the address is kept only as a hash",
                source=FORGOTTEN_SOURCE,
                created_at=at,
            )
        )


def is_forgotten(db: Database, email: str) -> bool:
    """True when ``email`` (any case) was forgotten: its hashed suppression exists."""
    hashed = forgotten_key(address_key(email))
    with db.session() as s:
        return s.scalar(select(Suppression.id).where(Suppression.email_key == hashed)) is not None
