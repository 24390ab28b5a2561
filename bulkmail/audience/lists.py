"""Lists and their members: create, find, count."""

from __future__ import annotations

from sqlalchemy import func, select

from bulkmail.db.engine import Database, now
from bulkmail.db.models import SUBSCRIBED, MailingList, Membership
from bulkmail.errors import InputError, NotFoundError


def create_list(db: Database, name: str, double_opt_in: bool = False) -> MailingList:
    """Create a list; a list of that name already existing is an InputError. A
    ``double_opt_in`` list takes sign-ups from ``serve``'s form, each confirmed by a link."""
    name = name.strip()
    if not name:
        raise InputError("list name must not be empty")
    with db.session() as s:
        if s.scalar(select(MailingList.id).where(MailingList.name == name)) is not None:
            raise InputError(f"list {name!r} already exists")
        lst = MailingList(name=name, created_at=now(), double_opt_in=double_opt_in)
        s.add(lst)
        s.flush()
        return lst


def find_list(db: Database, name: str) -> MailingList:
    with db.session() as s:
        lst = s.scalar(select(MailingList).where(MailingList.name == name))
    if lst is None:
        raise NotFoundError(f"no list named {name!r} (see 'bulkmail lists list')")
    return lst


def all_lists(db: Database) -> list[tuple[MailingList, int]]:
    """Every list with its number of subscribed members."""
    with db.session() as s:
        counts = dict(
            s.execute(
                select(Membership.list_id, func.count())
                .where(Membership.status == SUBSCRIBED)
                .group_by(Membership.list_id)
            ).all()
        )
        lists = s.scalars(select(MailingList).order_by(MailingList.id)).all()
    return [(lst, counts.get(lst.id, 0)) for lst in lists]
