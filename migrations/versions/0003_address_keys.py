"""address keys: compare addresses case-insensitively, merging what only differed in case

Subscribers and suppressions get ``email_key``: the address with its local part lower-cased
and its domain in lower-case ASCII (IDNA) form, the form every real provider and bulk sender
compares in. ``email`` keeps the address as given, for display and for delivery.

Rows that only differed in case become duplicates under the key; they are merged:
- suppressions: the oldest entry (its reason and source) is kept, the others deleted;
- subscribers: the oldest row is kept. The others' list memberships move to it (in a list
  both were members of, ``unsubscribed`` wins: never mail someone who opted out); their
  deliveries and events move to it unless it has a delivery of that campaign already. A
  duplicate left with such deliveries (the same campaign went to both spellings) stays as a
  retired row with no key and no memberships, so history stays exact and it is never mailed
  again; its pending deliveries become ``skipped``. Any other duplicate is deleted.

The key is computed here in Python, on both databases alike: SQL lower() differs between
SQLite (ASCII only) and PostgreSQL (locale-dependent) for non-ASCII local parts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from typing import Any

import idna
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PAGE = 5000


def _key(email: str) -> str:
    """A frozen copy of ``bulkmail.audience.addresses.address_key`` (migrations never change)."""
    local, _, domain = email.strip().rpartition("@")
    domain = domain.rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass
    return f"{local.lower()}@{domain}"


def _fill_keys(bind: Any, table: str) -> None:
    after = 0
    while True:
        rows = bind.execute(
            sa.text(f"SELECT id, email FROM {table} WHERE id > :a ORDER BY id LIMIT {PAGE}"),
            {"a": after},
        ).all()
        if not rows:
            return
        if bind.dialect.name == "postgresql":  # one statement a page, not one a row
            bind.execute(
                sa.text(f"""UPDATE {table} SET email_key = v.k
                    FROM unnest(CAST(:ids AS integer[]), CAST(:keys AS text[])) AS v(id, k)
                    WHERE {table}.id = v.id"""),
                {"ids": [r[0] for r in rows], "keys": [_key(r[1]) for r in rows]},
            )
        else:
            bind.execute(
                sa.text(f"UPDATE {table} SET email_key = :k WHERE id = :id"),
                [{"k": _key(email), "id": id_} for id_, email in rows],
            )
        after = rows[-1][0]


def _groups(bind: Any, table: str) -> list[list[int]]:
    """Ids sharing a key, oldest first, for every key held by more than one row (one query:
    there is no index on the key yet)."""
    rows = bind.execute(
        sa.text(f"""
        SELECT email_key, id FROM {table} WHERE email_key IN (
            SELECT email_key FROM {table} GROUP BY email_key HAVING COUNT(*) > 1)
        ORDER BY email_key, created_at, id""")
    ).all()
    groups: dict[str, list[int]] = {}
    for key, id_ in rows:
        groups.setdefault(key, []).append(id_)
    return list(groups.values())


# While merging, rows are looked up by subscriber id in tables whose keys do not start with
# it; these indexes make each lookup one probe instead of a scan, and go away afterwards.
_MERGE_INDEXES = {
    "tmp_0003_memberships_sid": "memberships",
    "tmp_0003_deliveries_sid": "deliveries",
    "tmp_0003_events_sid": "events",
}


def _merge_subscriber(bind: Any, keep: int, dup: int) -> None:
    p = {"k": keep, "d": dup}
    bind.execute(
        sa.text("""
        UPDATE memberships SET status = 'unsubscribed',
               updated_at = (SELECT MAX(o.updated_at) FROM memberships o
                             WHERE o.list_id = memberships.list_id
                               AND o.subscriber_id IN (:k, :d))
        WHERE subscriber_id = :k AND list_id IN (
            SELECT list_id FROM memberships WHERE subscriber_id = :d AND status = 'unsubscribed')
    """),
        p,
    )
    bind.execute(
        sa.text("""
        DELETE FROM memberships WHERE subscriber_id = :d
          AND list_id IN (SELECT list_id FROM memberships WHERE subscriber_id = :k)
    """),
        p,
    )
    bind.execute(sa.text("UPDATE memberships SET subscriber_id = :k WHERE subscriber_id = :d"), p)
    bind.execute(
        sa.text("""
        UPDATE deliveries SET subscriber_id = :k WHERE subscriber_id = :d
          AND campaign_id NOT IN (SELECT campaign_id FROM deliveries WHERE subscriber_id = :k)
    """),
        p,
    )
    bind.execute(
        sa.text("""
        UPDATE events SET subscriber_id = :k WHERE subscriber_id = :d AND (delivery_id IS NULL
            OR delivery_id IN (SELECT id FROM deliveries WHERE subscriber_id = :k))
    """),
        p,
    )
    bind.execute(
        sa.text("""
        UPDATE deliveries SET state = 'skipped', lease_owner = NULL, lease_until = NULL,
               last_text = 'duplicate address: merged into subscriber ' || :ks
        WHERE subscriber_id = :d AND state IN ('queued', 'deferred')
    """),
        {**p, "ks": str(keep)},
    )
    left = bind.execute(
        sa.text("SELECT COUNT(*) FROM deliveries WHERE subscriber_id = :d"), p
    ).scalar()
    if left:
        bind.execute(sa.text("UPDATE subscribers SET email_key = NULL WHERE id = :d"), p)
    else:
        bind.execute(sa.text("DELETE FROM subscribers WHERE id = :d"), p)


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("subscribers", sa.Column("email_key", sa.String(length=320), nullable=True))
    op.add_column("suppressions", sa.Column("email_key", sa.String(length=320), nullable=True))
    _fill_keys(bind, "suppressions")
    for ids in _groups(bind, "suppressions"):
        bind.execute(
            sa.text("DELETE FROM suppressions WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": ids[1:]},
        )
    with op.batch_alter_table("suppressions") as batch:
        batch.alter_column("email_key", existing_type=sa.String(length=320), nullable=False)
        batch.create_index("uq_suppressions_email_key", ["email_key"], unique=True)
    _fill_keys(bind, "subscribers")
    groups = _groups(bind, "subscribers")
    if groups:
        for name, table in _MERGE_INDEXES.items():
            op.create_index(name, table, ["subscriber_id"])
        for ids in groups:
            for dup in ids[1:]:
                _merge_subscriber(bind, ids[0], dup)
        for name, table in _MERGE_INDEXES.items():
            op.drop_index(name, table_name=table)
    op.create_index("uq_subscribers_email_key", "subscribers", ["email_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_subscribers_email_key", table_name="subscribers")
    op.drop_column("subscribers", "email_key")  # never a batch copy: it would cascade
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_index("uq_suppressions_email_key")
        batch.drop_column("email_key")
