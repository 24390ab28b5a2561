"""Check a new campaign's template against the members it will be sent to.

A synthetic subscriber with no attributes refuses a valid ``{{ subscriber.attributes.city }}``
when every member has a ``city``, and passes one that fails for the half of the list that
has none. So ``campaigns create`` renders the template for real members instead: one
representative (the lowest id) of every distinct *set of attribute keys* among the list's
subscribed, unsuppressed members. Whether a variable is defined depends only on which keys a
member has, so this sample finds every member an undefined variable would fail for, with as
many renders as there are key sets (a handful, on a list of a million). The key sets are
grouped in SQL (SQLite's ``json_each``, PostgreSQL's ``json_object_keys``), so the database
streams the list once and Python sees only one row per key set.

The choice: when any member would fail, the campaign is refused, with how many members and
the first one, and the fix (``| default(...)``). A user expects a created campaign to reach
its whole list; finding out from ``failed`` rows after the send is worse than a one-line
refusal now. Failures that depend on values rather than keys (``{{ 1 // subscriber.n }}``
with ``n = 0``), and members added after creation, are caught at send time instead: that
member's delivery becomes ``failed`` with the reason, and the send carries on.

An empty list is checked against the synthetic subscriber, so a typo still fails now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select, text

from bulkmail.compose.environment import TemplateRenderError
from bulkmail.compose.mime import Composer
from bulkmail.compose.render import Recipient
from bulkmail.db.engine import Database
from bulkmail.db.models import SUBSCRIBED, Subscriber
from bulkmail.errors import InputError, TemplateError

__all__ = ["KeySet", "attribute_key_sets", "check_against_members"]

# A list with more distinct key sets than this is checked on the largest ones only (about
# 0.2 ms each); the rest are caught at send time like value-dependent failures.
MAX_KEY_SETS = 5000

_MEMBERS = f"""
    FROM memberships m
    JOIN subscribers s ON s.id = m.subscriber_id
    LEFT JOIN suppressions x ON x.email_key = s.email_key
    WHERE m.list_id = :lid AND m.status = '{SUBSCRIBED}' AND x.id IS NULL
"""
# The attribute keys of s, in stored order, as one groupable value: a JSON array's text on
# SQLite, a text[] on PostgreSQL. Not sorted: one import writes its columns in one order, and
# the same set in another order only costs one more render. Sorting, or parsing to jsonb
# (whose keys come sorted), costs more than the rest of the query: on 1M members, PostgreSQL
# takes 3.4 s to scan, +0.4 s for json_object_keys, +2-4 s for jsonb; SQLite 1.4 s of CPU,
# 1.7 s sorted. ``attributes`` is always a JSON object (the model and the importer write dicts).
_KEYS = {
    "sqlite": "(SELECT json_group_array(key) FROM json_each(s.attributes))",
    "postgresql": "ARRAY(SELECT json_object_keys(s.attributes::json))",
}


@dataclass(frozen=True)
class KeySet:
    """The members of a list that share one set of attribute keys."""

    keys: frozenset[str]
    members: int
    first_id: int  # the lowest subscriber id among them: the one rendered


def attribute_key_sets(db: Database, list_id: int) -> list[KeySet]:
    """The list's sendable members grouped by their attribute keys, largest group first."""
    keys = _KEYS["postgresql" if db.engine.dialect.name == "postgresql" else "sqlite"]
    sql = text(f"""
        SELECT ks, count(*) AS n, min(id) AS first_id
        FROM (SELECT s.id AS id, {keys} AS ks {_MEMBERS}) AS t
        GROUP BY ks
        ORDER BY n DESC, first_id
    """)
    with db.session() as s:
        rows = s.execute(sql, {"lid": list_id}).all()
    return [
        KeySet(frozenset(json.loads(ks) if isinstance(ks, str) else ks), int(n), int(first))
        for ks, n, first in rows
    ]


def _members_by_id(db: Database, ids: list[int]) -> dict[int, Subscriber]:
    found: dict[int, Subscriber] = {}
    with db.session() as s:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(Subscriber).where(Subscriber.id.in_(chunk))
            found.update({sub.id: sub for sub in s.scalars(query)})
    return found


def check_against_members(db: Database, composer: Composer, list_id: int, list_name: str) -> None:
    """Raise TemplateError if the template fails for any member (see the module docstring)."""
    groups = attribute_key_sets(db, list_id)
    if not groups:
        composer.check()
        return
    checked = groups[:MAX_KEY_SETS]
    members = _members_by_id(db, [g.first_id for g in checked])
    failures: list[tuple[KeySet, TemplateError]] = []
    for group in checked:
        sub = members[group.first_id]
        try:
            composer.check(Recipient(sub.id, sub.email, sub.name or "", dict(sub.attributes or {})))
        except TemplateError as exc:
            failures.append((group, exc))
        except InputError:
            pass  # an address compose refuses: not the template's fault; failed at send
    if failures:
        raise refusal(failures, groups, members, list_name)


def refusal(
    failures: list[tuple[KeySet, TemplateError]],
    groups: list[KeySet],
    members: dict[int, Subscriber],
    list_name: str,
) -> TemplateError:
    """The one-line refusal: the first failure, how many members, the first one, the fix."""
    group, exc = min(failures, key=lambda f: f[0].first_id)
    total = sum(g.members for g in groups)
    failing = sum(g.members for g, _ in failures)
    capped = "at least " if len(groups) > MAX_KEY_SETS else ""
    if failing == total and not capped:
        return TemplateError(f"{exc} (all {total} members of list {list_name!r})")
    who = (
        f"{capped}{failing} of {total} members of list {list_name!r} fail, "
        f"first {members[group.first_id].email}"
    )
    variable = exc.variable if isinstance(exc, TemplateRenderError) else None
    if variable is None:
        return TemplateError(f"{exc} ({who})")
    return TemplateError(
        f"{exc} ({who}); give the members without it a fallback: {{{{ {variable} | default('') }}}}"
    )
