"""Addresses compared case-insensitively on SQLite and PostgreSQL: migration 0003 merging what
only differed in case, and every way an address enters (suppressions add and import,
subscriber import, unsubscribe, bounce, complaint) matching at enqueue and at claim."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bulkmail.db.engine import Database, upgrade
from tests.dbfixtures import PG_ADMIN


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, to migrate step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'steps.db'}"
        return
    name = f"bulkmail_steps_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(text(sql)).all()]


def _seed_0002(db: Database) -> None:
    """Rows as 0002 stored them: case variants of one address as separate rows."""
    with db.session() as s:
        s.execute(
            text("INSERT INTO lists (id, name, created_at) VALUES (1, 'news', 0), (2, 'other', 0)")
        )
        for sid, email in (
            (1, "Ann@x.test"),
            (2, "ann@x.test"),
            (3, "ANN@x.test"),
            (4, "bob@x.test"),
        ):
            s.execute(
                text(
                    "INSERT INTO subscribers (id, email, domain, name, attributes, created_at,"
                    " updated_at) VALUES (:i, :e, 'x.test', '', '{}', :i, :i)"
                ),
                {"i": sid, "e": email},
            )
        for lid, sid, status in (
            (1, 1, "subscribed"),
            (1, 2, "unsubscribed"),
            (2, 3, "subscribed"),
            (1, 4, "subscribed"),
        ):
            s.execute(
                text(
                    "INSERT INTO memberships (list_id, subscriber_id, status, updated_at) "
                    "VALUES (:l, :s, :st, :s)"
                ),
                {"l": lid, "s": sid, "st": status},
            )
        for cid, lid in ((1, 1), (2, 2)):
            s.execute(
                text(
                    "INSERT INTO campaigns (id, name, subject, from_header, template, list_id,"
                    " state, state_reason, enqueued, created_at) VALUES (:c, 'c', 's',"
                    " 'f@x.test', 't', :l, 'running', '', true, 0)"
                ),
                {"c": cid, "l": lid},
            )
        for did, cid, sid, email, state in (
            (1, 1, 1, "Ann@x.test", "sent"),
            (2, 1, 2, "ann@x.test", "queued"),
            (3, 2, 3, "ANN@x.test", "sent"),
        ):
            s.execute(
                text(
                    "INSERT INTO deliveries (id, campaign_id, subscriber_id, email, domain,"
                    " state, attempts, next_attempt_at, created_at, updated_at) VALUES"
                    " (:d, :c, :s, :e, 'x.test', :st, 0, 0, 0, 0)"
                ),
                {"d": did, "c": cid, "s": sid, "e": email, "st": state},
            )
        s.execute(
            text(
                "INSERT INTO events (kind, campaign_id, delivery_id, subscriber_id,"
                " email, source, created_at) VALUES ('bounced', 2, 3, 3, 'ANN@x.test',"
                " 'engine', 0)"
            )
        )
        for email, reason, stamp in (
            ("user20@good.test", "later", 9.0),
            ("USER20@good.test", "first", 5.0),
            ("Mixed.Case@good.test", "only", 7.0),
        ):
            s.execute(
                text(
                    "INSERT INTO suppressions (email, reason, source, created_at) "
                    "VALUES (:e, :r, 'manual', :t)"
                ),
                {"e": email, "r": reason, "t": stamp},
            )


def test_migration_0003_keys_addresses_and_merges_what_only_differed_in_case(
    empty_url: str,
) -> None:
    db = Database(empty_url)
    try:
        assert upgrade(db, "0002") == "0002"
        _seed_0002(db)
        assert upgrade(db, "0003") == "0003"
        # The oldest suppression of a key is kept, with its reason; keys are lower case.
        assert _rows(
            db, "SELECT email, email_key, reason FROM suppressions ORDER BY email_key"
        ) == [
            ("Mixed.Case@good.test", "mixed.case@good.test", "only"),
            ("USER20@good.test", "user20@good.test", "first"),
        ]
        # Subscriber 1 (oldest) keeps the key; 2 got campaign 1 as well, so it stays retired
        # (no key, no memberships); 3 had only campaign 2, which moved to 1, so it is gone.
        assert _rows(db, "SELECT id, email, email_key FROM subscribers ORDER BY id") == [
            (1, "Ann@x.test", "ann@x.test"),
            (2, "ann@x.test", None),
            (4, "bob@x.test", "bob@x.test"),
        ]
        # Unsubscribed in list 1 under one spelling: unsubscribed for the person.
        assert _rows(
            db,
            "SELECT list_id, subscriber_id, status FROM memberships "
            "ORDER BY list_id, subscriber_id",
        ) == [
            (1, 1, "unsubscribed"),
            (1, 4, "subscribed"),
            (2, 1, "subscribed"),
        ]
        assert _rows(db, "SELECT id, subscriber_id, email, state FROM deliveries ORDER BY id") == [
            (1, 1, "Ann@x.test", "sent"),
            (2, 2, "ann@x.test", "skipped"),  # would have mailed the same person twice
            (3, 1, "ANN@x.test", "sent"),
        ]
        assert _rows(db, "SELECT delivery_id, subscriber_id FROM events") == [(3, 1)]
        with db.session() as s, pytest.raises(Exception, match="(?i)unique"):
            s.execute(
                text(
                    "INSERT INTO suppressions (email, email_key, reason, source, "
                    "created_at) VALUES ('uSeR20@good.test', 'user20@good.test', '', "
                    "'manual', 0)"
                )
            )
    finally:
        db.dispose()
