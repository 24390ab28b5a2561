"""Addresses compared case-insensitively on SQLite and PostgreSQL: migration 0003 merging what
only differed in case, and every way an address enters (suppressions add and import,
subscriber import, unsubscribe, bounce, complaint) matching at enqueue and at claim."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bulkmail.audience import suppressions as sup
from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.audience.unsubscribe import unsubscribe_token
from bulkmail.bounces.apply import apply_report
from bulkmail.bounces.parse import parse_report
from bulkmail.campaigns import create_campaign, find_recipient
from bulkmail.compose.tokens import make_token
from bulkmail.config import parse_settings
from bulkmail.db import queries
from bulkmail.db.engine import Database, upgrade
from bulkmail.db.queries import enqueue
from bulkmail.web.app import DatabaseBackend, create_app
from tests.dbfixtures import PG_ADMIN

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; httpx works the same here
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient


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


# -- every way an address enters, on today's schema ------------------------------------------

SECRET = b"address-keys-secret-0123456789"


def _audience(db: Database, tmp_path: Path, *emails: str, list_name: str = "news") -> int:
    """A list holding ``emails`` (imported as written); returns the list id."""
    lst = create_list(db, list_name)
    path = tmp_path / f"{list_name}.csv"
    path.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    assert not import_csv(db, list_name, path).rejected
    return lst.id


def _campaign(db: Database, list_name: str = "news") -> int:
    """A running campaign to the list (claim takes rows of running campaigns only)."""
    cid = create_campaign(
        db,
        parse_settings({}, "test"),
        name="c",
        list_name=list_name,
        subject="Hi",
        from_header="News <news@example.com>",
        template="newsletter",
    ).id
    with db.session() as s:
        s.execute(text("UPDATE campaigns SET state = 'running' WHERE id = :c"), {"c": cid})
    return cid


def _states(db: Database, cid: int) -> dict[str, str]:
    with db.session() as s:
        return dict(
            s.execute(
                text("SELECT email, state FROM deliveries WHERE campaign_id = :c"), {"c": cid}
            ).all()
        )


def test_suppressions_added_or_imported_in_another_case_skip_at_enqueue(
    db: Database, tmp_path: Path
) -> None:
    lid = _audience(db, tmp_path, "user20@good.test", "Mixed.Case@good.test", "kept@good.test")
    assert sup.add_suppression(db, "USER20@GOOD.TEST", "asked") is True
    blocked = tmp_path / "blocked.csv"
    blocked.write_text("mixed.case@GOOD.test,import\n", encoding="utf-8")
    assert sup.import_csv(db, blocked).added == 1
    cid = _campaign(db)
    enqueue(db, cid, lid, time.time())
    assert _states(db, cid) == {
        "user20@good.test": "skipped",
        "Mixed.Case@good.test": "skipped",
        "kept@good.test": "queued",
    }
    # One entry per address whatever the case: adding or removing another spelling finds it.
    assert sup.add_suppression(db, "User20@good.test") is False
    assert sup.remove_suppression(db, "MIXED.CASE@good.test") is True


def test_a_suppression_in_another_case_after_enqueue_skips_at_claim(
    db: Database, tmp_path: Path
) -> None:
    lid = _audience(db, tmp_path, "Mixed.Case@good.test", "kept@good.test")
    cid = _campaign(db)
    now = time.time()
    enqueue(db, cid, lid, now)
    sup.add_suppression(db, "MIXED.CASE@GOOD.TEST")
    claimed = queries.claim(db, [cid], "w", now, 60, 10)
    assert [r.email for r in claimed] == ["kept@good.test"]
    assert _states(db, cid)["Mixed.Case@good.test"] == "skipped"


def test_an_idn_domain_in_either_form_is_one_address(db: Database, tmp_path: Path) -> None:
    lid = _audience(db, tmp_path, "Ann@xn--bcher-kva.test")
    assert sup.add_suppression(db, "ann@BÜCHER.test") is True
    cid = _campaign(db)
    enqueue(db, cid, lid, time.time())
    assert _states(db, cid) == {"Ann@xn--bcher-kva.test": "skipped"}


def test_importing_another_case_updates_the_subscriber_and_keeps_an_unsubscribe(
    db: Database, tmp_path: Path
) -> None:
    """Unsubscribed by the one-click endpoint, then imported again in other case: still out."""
    lid = _audience(db, tmp_path, "Mixed.Case@good.test", "kept@good.test")
    cid = _campaign(db)
    ids = dict(_rows(db, "SELECT email, id FROM subscribers"))  # type: ignore[arg-type]
    client = TestClient(create_app(DatabaseBackend(db, SECRET)))
    token = make_token(SECRET, cid, ids["Mixed.Case@good.test"])  # type: ignore[arg-type]
    answer = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    again = tmp_path / "again.csv"
    again.write_text("email,name\nmixed.case@GOOD.TEST,Mixed\nKEPT@good.test,Kept\n", "utf-8")
    result = import_csv(db, "news", again)
    assert (result.imported, result.updated) == (0, 2)
    assert _rows(db, "SELECT email, email_key, name FROM subscribers ORDER BY id") == [
        ("Mixed.Case@good.test", "mixed.case@good.test", "Mixed"),
        ("kept@good.test", "kept@good.test", "Kept"),
    ]
    later = _campaign(db)
    enqueue(db, later, lid, time.time())
    assert _states(db, later) == {"kept@good.test": "queued"}


def test_a_case_duplicate_inside_one_file_keeps_the_first_spelling(
    db: Database, tmp_path: Path
) -> None:
    """Within one file, as across imports, the address stays as first written; the later row's
    name and attributes win. Before, a duplicate in the same batch took the later spelling, and
    one in a later batch kept the first, so the result depended on the batch size."""
    create_list(db, "news")
    csv = tmp_path / "dups.csv"
    csv.write_text("email,name,city\nann@example.com,Ann,Oslo\nAnn@Example.com,Ann2,Bergen\n")
    result = import_csv(db, "news", csv)
    assert (result.imported, result.updated) == (1, 1)
    assert _rows(db, "SELECT email, name FROM subscribers") == [("ann@example.com", "Ann2")]


def test_a_retired_duplicate_s_unsubscribe_link_unsubscribes_the_person(
    db: Database, tmp_path: Path
) -> None:
    """A row migration 0003 retired (no key) stands for the live row of its address."""
    lid = _audience(db, tmp_path, "ann@x.test")
    cid = _campaign(db)
    with db.session() as s:
        retired = s.execute(
            text(
                "INSERT INTO subscribers (email, domain, name, attributes, created_at, "
                "updated_at) VALUES ('ANN@x.test', 'x.test', '', '{}', 0, 0) RETURNING id"
            )
        ).scalar_one()
    outcome = unsubscribe_token(db, SECRET, make_token(SECRET, cid, retired), "one-click")
    assert outcome is not None and outcome.changed
    assert _rows(db, f"SELECT status FROM memberships WHERE list_id = {lid}") == [("unsubscribed",)]


def _deliver(db: Database, tmp_path: Path, email: str) -> tuple[int, queries.Claimed]:
    lid = _audience(db, tmp_path, email)
    cid = _campaign(db)
    now = time.time()
    enqueue(db, cid, lid, now)
    (row,) = queries.claim(db, [cid], "w", now, 60, 1)
    return cid, row


def test_a_hard_bounce_at_send_suppresses_the_address_in_every_case(
    db: Database, tmp_path: Path
) -> None:
    _cid, row = _deliver(db, tmp_path, "User.Bounce@x.test")
    now = time.time()
    queries.record(
        db,
        [
            queries.Result(
                row.id,
                row.campaign_id,
                row.subscriber_id,
                row.email,
                "bounced",
                1,
                None,
                550,
                "5.1.1",
                "no such user",
                "mx.x.test",
                None,
                "bounced",
                suppress=True,
            )
        ],
        now,
        owner="w",
    )
    assert sup.add_suppression(db, "user.bounce@X.TEST") is False
    assert [e.email for e in sup.iter_suppressions(db)] == ["User.Bounce@x.test"]


def _report(kind: str, token: str, recipients: list[tuple[str, str]]) -> bytes:
    returned = f"From: news@example.com\r\nX-Bulkmail-Delivery: {token}\r\nSubject: Hi\r\n"
    if kind == "bounce":
        blocks = "".join(
            f"Final-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: {st}\r\n"
            f"Diagnostic-Code: smtp; 550 {st} refused\r\n\r\n"
            for r, st in recipients
        )
        return (
            "From: MAILER-DAEMON@mx.x.test\r\nTo: bounces@example.com\r\nSubject: failed\r\n"
            "Message-ID: <dsn-1@mx.x.test>\r\nMIME-Version: 1.0\r\nContent-Type: "
            'multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.x.test"
            f"\r\n\r\n{blocks}--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n"
            "--B--\r\n"
        ).encode()
    (rcpt, _st), *_ = recipients
    return (
        "From: fbl@isp.test\r\nTo: fbl@example.com\r\nSubject: Complaint\r\n"
        "Message-ID: <arf-1@isp.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report;"
        ' report-type=feedback-report; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        "--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"User-Agent: ISP-FBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: {rcpt}\r\n\r\n"
        f"--A\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--A--\r\n"
    ).encode()


def test_a_bounce_report_naming_the_address_in_other_case_is_about_that_recipient(
    db: Database, tmp_path: Path
) -> None:
    cid, row = _deliver(db, tmp_path, "User.Bounce@x.test")
    queries.record(
        db,
        [
            queries.Result(
                row.id,
                cid,
                row.subscriber_id,
                row.email,
                "sent",
                1,
                None,
                250,
                None,
                "ok",
                "mx.x.test",
                None,
                None,
            )
        ],
        time.time(),
    )
    token = make_token(SECRET, cid, row.subscriber_id)
    # The first failure is someone else's mailbox-full; ours, in lower case, is "no such user".
    data = _report("bounce", token, [("other@y.test", "5.2.2"), ("user.bounce@x.test", "5.1.1")])
    outcome = apply_report(db, parse_report(data), SECRET, source="file")
    assert outcome.processed, outcome
    assert [(e.detail[:9], e.suppressed) for e in outcome.effects] == [("550 5.1.1", True)]
    assert sup.add_suppression(db, "USER.BOUNCE@x.test") is False


def test_a_complaint_suppresses_the_address_in_every_case(db: Database, tmp_path: Path) -> None:
    cid, row = _deliver(db, tmp_path, "Mixed.Case@good.test")
    queries.record(
        db,
        [
            queries.Result(
                row.id,
                cid,
                row.subscriber_id,
                row.email,
                "sent",
                1,
                None,
                250,
                None,
                "ok",
                "mx.good.test",
                None,
                None,
            )
        ],
        time.time(),
    )
    data = _report(
        "complaint", make_token(SECRET, cid, row.subscriber_id), [("mixed.case@good.test", "")]
    )
    outcome = apply_report(db, parse_report(data), SECRET, source="file")
    assert outcome.processed, outcome
    assert sup.add_suppression(db, "MIXED.CASE@GOOD.TEST") is False
    other = _audience(db, tmp_path, "mixed.CASE@good.test", list_name="other")
    later = _campaign(db, "other")
    enqueue(db, later, other, time.time())
    assert _states(db, later) == {"Mixed.Case@good.test": "skipped"}


def test_preview_to_finds_the_subscriber_in_any_case(db: Database, tmp_path: Path) -> None:
    _audience(db, tmp_path, "Mixed.Case@good.test")
    cid = _campaign(db)
    recipient = find_recipient(db, cid, "MIXED.CASE@GOOD.TEST")
    assert recipient.email == "Mixed.Case@good.test"  # delivered as given
