"""Seeing and managing the audience: list, show, remove and export subscribers; show, rename
and delete lists.

Listing and exporting read by keyset (``subscribers.id > after ORDER BY id LIMIT n``), never
OFFSET, so page 10,000 costs what page 1 costs and an export of a million streams in constant
memory. Every filter is SQL, the same on SQLite and PostgreSQL. A suppression matches a
subscriber by address key, or by its hash when the address was forgotten (``forget``).

Removing a subscriber from a list deletes the membership (a later import adds them again; an
unsubscribe, by contrast, is kept); their pending deliveries to campaigns of that list become
``skipped`` in the same transaction, since the claim only skips members marked unsubscribed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy import String, delete, func, select, update
from sqlalchemy.sql import ColumnElement

from bulkmail.audience.addresses import InvalidAddress, address_key, normalize_address
from bulkmail.audience.forget import forgotten_key, hashed_key_sql, is_forgotten
from bulkmail.audience.lists import find_list
from bulkmail.audience.suppressions import iso_time
from bulkmail.db.engine import Database, now
from bulkmail.db.models import (
    PENDING_STATES,
    SKIPPED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Campaign,
    Delivery,
    Event,
    MailingList,
    Membership,
    Subscriber,
    Suppression,
)
from bulkmail.errors import InputError, NotFoundError
from bulkmail.reports.export import spreadsheet_safe

PAGE = 100
EXPORT_PAGE = 1000
RECENT_EVENTS = 20
MEMBERSHIP_STATES = (SUBSCRIBED, UNSUBSCRIBED)


@dataclass(frozen=True)
class Filter:
    """Which subscribers: on ``list_name`` (in ``state`` there), with ``attribute`` (``key`` or
    ``key=value``), suppressed or not (None: either)."""

    list_name: str | None = None
    state: str | None = None
    attribute: str | None = None
    suppressed: bool | None = None


@dataclass(frozen=True)
class Row:
    id: int
    email: str
    name: str
    attributes: dict[str, Any]
    suppressed: bool
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "attributes": self.attributes,
            "suppressed": self.suppressed,
            "created_at": iso_time(self.created_at),
        }


def suppressed_clause(db: Database) -> ColumnElement[bool]:
    """SQL: the ``subscribers`` row in the query is suppressed (by key, or by hash: forgotten)."""
    from sqlalchemy import literal_column, or_

    hashed = literal_column(hashed_key_sql("subscribers.email_key", db.sqlite), String)
    return (
        select(Suppression.id)
        .where(or_(Suppression.email_key == Subscriber.email_key, Suppression.email_key == hashed))
        .exists()
    )


def _where(db: Database, f: Filter) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = [Subscriber.email_key.is_not(None)]  # not retired
    if f.state and f.state not in MEMBERSHIP_STATES:
        raise InputError(f"--state {f.state!r}: use one of {', '.join(MEMBERSHIP_STATES)}")
    if f.list_name:
        lst = find_list(db, f.list_name)
        member = select(Membership.subscriber_id).where(
            Membership.list_id == lst.id, Membership.subscriber_id == Subscriber.id
        )
        if f.state:
            member = member.where(Membership.status == f.state)
        clauses.append(member.exists())
    elif f.state:
        clauses.append(
            select(Membership.subscriber_id)
            .where(Membership.subscriber_id == Subscriber.id, Membership.status == f.state)
            .exists()
        )
    if f.attribute:
        key, eq, value = f.attribute.partition("=")
        if not key.strip():
            raise InputError(f"--attribute {f.attribute!r}: expected KEY or KEY=VALUE")
        field_ = Subscriber.attributes[key.strip()].as_string()
        clauses.append(field_ == value if eq else field_.is_not(None))
    if f.suppressed is not None:
        clauses.append(suppressed_clause(db) if f.suppressed else ~suppressed_clause(db))
    return clauses


def list_subscribers(
    db: Database, f: Filter = Filter(), after: int = 0, limit: int = PAGE
) -> list[Row]:
    """One page: up to ``limit`` subscribers with id > ``after`` matching ``f``, by id."""
    if limit < 1:
        raise InputError("--limit must be at least 1")
    query = (
        select(Subscriber, suppressed_clause(db).label("suppressed"))
        .where(Subscriber.id > after, *_where(db, f))
        .order_by(Subscriber.id)
        .limit(limit)
    )
    with db.session() as s:
        rows = s.execute(query).all()
    return [
        Row(r[0].id, r[0].email, r[0].name, _attrs(r[0].attributes), bool(r[1]), r[0].created_at)
        for r in rows
    ]


def iter_subscribers(db: Database, f: Filter = Filter(), page: int = EXPORT_PAGE) -> Iterator[Row]:
    """Every matching subscriber, by id, read page by page (constant memory)."""
    after = 0
    while True:
        rows = list_subscribers(db, f, after, page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].id


def _attrs(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def _find(db: Database, email: str) -> Subscriber:
    try:
        key = normalize_address(email).key
    except InvalidAddress:
        key = address_key(email)
    with db.session() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if sub is None:
        if is_forgotten(db, email):
            raise NotFoundError(
                f"no subscriber {email!r}: it was forgotten (only its hash is kept)"
            )
        raise NotFoundError(f"no subscriber {email!r} (see 'bulkmail subscribers list')")
    return sub


@dataclass
class Details:
    subscriber: dict[str, Any]
    memberships: list[dict[str, Any]] = field(default_factory=list)
    suppressions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.subscriber,
            "memberships": self.memberships,
            "suppressions": self.suppressions,
            "events": self.events,
        }


def show_subscriber(db: Database, email: str, events: int = RECENT_EVENTS) -> Details:
    """Everything known about one subscriber (any case of the address)."""
    sub = _find(db, email)
    key = sub.email_key or ""
    with db.session() as s:
        members = s.execute(
            select(MailingList.name, Membership.status, Membership.updated_at)
            .join(MailingList, MailingList.id == Membership.list_id)
            .where(Membership.subscriber_id == sub.id)
            .order_by(MailingList.name)
        ).all()
        blocks = s.scalars(
            select(Suppression).where(Suppression.email_key.in_([key, forgotten_key(key)]))
        ).all()
        recent = s.scalars(
            select(Event)
            .where(Event.subscriber_id == sub.id)
            .order_by(Event.id.desc())
            .limit(events)
        ).all()
    return Details(
        {
            "id": sub.id,
            "email": sub.email,
            "name": sub.name,
            "attributes": _attrs(sub.attributes),
            "created_at": iso_time(sub.created_at),
            "updated_at": iso_time(sub.updated_at),
        },
        [{"list": m.name, "status": m.status, "since": iso_time(m.updated_at)} for m in members],
        [
            {"reason": x.reason, "source": x.source, "created_at": iso_time(x.created_at)}
            for x in blocks
        ],
        [
            {
                "at": iso_time(e.created_at),
                "kind": e.kind,
                "campaign_id": e.campaign_id,
                "code": e.code,
                "enhanced": e.enhanced,
                "text": e.text,
            }
            for e in recent
        ],
    )


def remove_subscriber(db: Database, email: str, list_name: str | None = None) -> list[str]:
    """Take the subscriber off ``list_name`` (every list if None); returns the lists left.

    Pending deliveries to campaigns of those lists become ``skipped`` ("removed")."""
    sub = _find(db, email)
    only = find_list(db, list_name).id if list_name else None
    stamp = now()
    with db.session() as s:
        query = (
            select(Membership.list_id, MailingList.name)
            .join(MailingList, MailingList.id == Membership.list_id)
            .where(Membership.subscriber_id == sub.id)
        )
        if only is not None:
            query = query.where(Membership.list_id == only)
        found = s.execute(query.order_by(MailingList.name)).all()
        if not found:
            where = f"list {list_name!r}" if list_name else "any list"
            raise NotFoundError(f"{sub.email!r} is not on {where}")
        ids = [r.list_id for r in found]
        s.execute(
            delete(Membership).where(
                Membership.subscriber_id == sub.id, Membership.list_id.in_(ids)
            )
        )
        s.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id == sub.id,
                Delivery.state.in_(PENDING_STATES),
                Delivery.campaign_id.in_(select(Campaign.id).where(Campaign.list_id.in_(ids))),
            )
            .values(
                state=SKIPPED,
                last_text="removed",
                finished_at=stamp,
                updated_at=stamp,
                lease_owner=None,
                lease_until=None,
            )
        )
    return [r.name for r in found]


def export_subscribers(db: Database, out: TextIO, f: Filter = Filter()) -> int:
    """Write matching subscribers as CSV that ``subscribers import`` reads back: email, name,
    then one column per attribute key (sorted). Cells a spreadsheet would run as a formula get
    a leading ``'`` (``reports.export``). Two keyset passes: the keys, then the rows."""
    keys: set[str] = set()
    for row in iter_subscribers(db, f):
        keys.update(row.attributes)
    columns = sorted(keys - {"email", "name"})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", *columns])
    count = 0
    safe = spreadsheet_safe
    for row in iter_subscribers(db, f):
        cells = [_cell(row.attributes.get(k)) for k in columns]
        writer.writerow([safe(row.email), safe(row.name), *(safe(c) for c in cells)])
        count += 1
    return count


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- lists ------------------------------------------------------------------------------------


def list_details(db: Database, name: str) -> dict[str, Any]:
    """A list's counts: members per state, suppressed subscribed members, campaigns."""
    lst = find_list(db, name)
    with db.session() as s:
        states = dict(
            s.execute(
                select(Membership.status, func.count())
                .where(Membership.list_id == lst.id)
                .group_by(Membership.status)
            ).all()
        )
        suppressed = s.scalar(
            select(func.count())
            .select_from(Membership)
            .join(Subscriber, Subscriber.id == Membership.subscriber_id)
            .where(
                Membership.list_id == lst.id, Membership.status == SUBSCRIBED, suppressed_clause(db)
            )
        )
        campaigns = s.execute(
            select(Campaign.id, Campaign.name, Campaign.state)
            .where(Campaign.list_id == lst.id)
            .order_by(Campaign.id)
        ).all()
    return {
        "id": lst.id,
        "name": lst.name,
        "created_at": iso_time(lst.created_at),
        "subscribed": states.get(SUBSCRIBED, 0),
        "unsubscribed": states.get(UNSUBSCRIBED, 0),
        "suppressed": suppressed or 0,
        "campaigns": [{"id": c.id, "name": c.name, "state": c.state} for c in campaigns],
    }


def rename_list(db: Database, name: str, new_name: str) -> MailingList:
    new_name = new_name.strip()
    if not new_name:
        raise InputError("the new list name must not be empty")
    lst = find_list(db, name)
    with db.session() as s:
        taken = s.scalar(select(MailingList.id).where(MailingList.name == new_name))
        if taken is not None and taken != lst.id:
            raise InputError(f"list {new_name!r} already exists")
        s.execute(update(MailingList).where(MailingList.id == lst.id).values(name=new_name))
    lst.name = new_name
    return lst


def delete_list(db: Database, name: str) -> int:
    """Delete a list and its memberships (subscribers stay); returns the members it had.

    A list that campaigns were made for is kept: their deliveries and reports refer to it."""
    lst = find_list(db, name)
    with db.session() as s:
        used = s.scalars(select(Campaign.id).where(Campaign.list_id == lst.id)).all()
        if used:
            ids = ", ".join(str(i) for i in used)
            raise InputError(
                f"list {name!r} has campaigns ({ids}); delete them first "
                "('bulkmail campaigns delete ID', possible before they are sent)"
            )
        members = s.scalar(
            select(func.count()).select_from(Membership).where(Membership.list_id == lst.id)
        )
        s.execute(delete(Membership).where(Membership.list_id == lst.id))
        s.execute(delete(MailingList).where(MailingList.id == lst.id))
    return members or 0
