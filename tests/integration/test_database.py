"""The campaign database on SQLite and PostgreSQL: migrations, import, the queue queries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list, find_list
from bulkmail.db import queries
from bulkmail.db.engine import Database, upgrade
from bulkmail.db.models import Delivery, Membership, Subscriber
from bulkmail.errors import InputError, NotFoundError

# The newest revision: the highest-numbered file in migrations/versions.
HEAD = max(
    p.name[:4] for p in (Path(__file__).parents[2] / "migrations" / "versions").glob("0*.py")
)


def csv_file(tmp_path: Path, body: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return path


def test_migrations_create_every_table_and_rerun_idempotently(db: Database) -> None:
    assert upgrade(db) == HEAD  # the fixture already migrated; running again is harmless
    assert upgrade(db) == HEAD
    with db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert {
        "lists",
        "subscribers",
        "memberships",
        "suppressions",
        "campaigns",
        "deliveries",
        "events",
        "site_leases",
        "alembic_version",
    } <= tables


def test_empty_sqlite_file_is_upgraded_from_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'new.db'}")
    assert upgrade(db) == HEAD
    db.check_ready()


def test_import_creates_subscribers_with_attributes(db: Database, tmp_path: Path) -> None:
    create_list(db, "news")
    path = csv_file(
        tmp_path, "email,name,city,plan\nAnn@Example.COM,Ann,Oslo,pro\nbob@example.org,,,free\n"
    )
    result = import_csv(db, "news", path)
    assert (result.imported, result.updated, result.rejected) == (2, 0, [])
    with db.session() as s:
        ann = s.scalar(select(Subscriber).where(Subscriber.email == "Ann@example.com"))
        assert ann is not None
        assert ann.name == "Ann" and ann.domain == "example.com"
        assert ann.attributes == {"city": "Oslo", "plan": "pro"}
        assert s.scalar(
            select(Subscriber.attributes).where(Subscriber.email == "bob@example.org")
        ) == {"plan": "free"}


def test_rejected_rows_are_reported_with_line_and_reason(db: Database, tmp_path: Path) -> None:
    create_list(db, "news")
    path = csv_file(
        tmp_path,
        "email,name\nok@example.com,Ok\nnot-an-address,X\n"
        "\n"
        "a@example.com,too,many\nb@example.com,B\n",
    )
    result = import_csv(db, "news", path)
    assert result.imported == 2
    assert [(r.line, r.email) for r in result.rejected] == [
        (3, "not-an-address"),
        (5, "a@example.com"),
    ]
    assert "expected 2 fields, found 3" in result.rejected[1].reason


def test_reimport_updates_instead_of_duplicating(db: Database, tmp_path: Path) -> None:
    create_list(db, "news")
    first = csv_file(tmp_path, "email,name\na@example.com,A\nb@example.com,B\n", "1.csv")
    assert import_csv(db, "news", first).imported == 2
    second = csv_file(
        tmp_path, "email,name\na@example.com,Anna\nc@example.com,C\nc@example.com,Cee\n", "2.csv"
    )
    result = import_csv(db, "news", second)
    assert (result.imported, result.updated) == (1, 2)
    with db.session() as s:
        names = dict(s.execute(select(Subscriber.email, Subscriber.name)).all())
        assert names == {"a@example.com": "Anna", "b@example.com": "B", "c@example.com": "Cee"}
        assert s.scalar(select(text("count(*)")).select_from(Membership)) == 3


def test_an_unsubscribed_member_stays_unsubscribed_on_reimport(
    db: Database, tmp_path: Path
) -> None:
    lst = create_list(db, "news")
    path = csv_file(tmp_path, "email\na@example.com\n")
    import_csv(db, "news", path)
    with db.session() as s:
        s.execute(text("UPDATE memberships SET status = 'unsubscribed'"))
    import_csv(db, "news", path)
    with db.session() as s:
        assert (
            s.scalar(select(Membership.status).where(Membership.list_id == lst.id))
            == "unsubscribed"
        )


def test_import_in_small_batches_spans_transactions(db: Database, tmp_path: Path) -> None:
    create_list(db, "news")
    rows = "".join(f"user{i}@example.com,User {i}\n" for i in range(250))
    result = import_csv(db, "news", csv_file(tmp_path, "email,name\n" + rows), batch_size=40)
    assert result.imported == 250
    with db.session() as s:
        assert s.scalar(select(text("count(*)")).select_from(Subscriber)) == 250


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"email,name\nfirst@example.com,x\nb\xe9a@example.com,x\n", "not UTF-8"),
        (b"name,city\nAnn,Oslo\n", "no 'email' column"),
        (b"", "empty file"),
        (b'email,name\nfirst@example.com,x\n"unterminated@example.com,x\n', "not valid CSV"),
        (b"email,Email\na@example.com,b@example.com\n", "appears twice"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
    ],
)
def test_a_bad_file_changes_nothing(
    db: Database, tmp_path: Path, body: bytes, message: str
) -> None:
    create_list(db, "news")
    with pytest.raises(InputError, match=message):
        import_csv(db, "news", csv_file(tmp_path, body))
    with db.session() as s:
        assert s.scalar(select(text("count(*)")).select_from(Subscriber)) == 0


def test_import_into_an_unknown_list_is_not_found(db: Database, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no list named 'ghost'"):
        import_csv(db, "ghost", csv_file(tmp_path, "email\na@example.com\n"))


def test_duplicate_list_name_is_refused(db: Database) -> None:
    create_list(db, "news")
    with pytest.raises(InputError, match="already exists"):
        create_list(db, "news")
    assert find_list(db, "news").name == "news"


def _campaign(db: Database, list_id: int) -> int:
    with db.session() as s:
        return s.execute(
            text(
                "INSERT INTO campaigns (name, subject, from_header, template, list_id, state, "
                "state_reason, enqueued, created_at) VALUES ('c', 's', 'A <a@example.com>', "
                "'newsletter', :l, 'running', '', :f, 0) RETURNING id"
            ),
            {"l": list_id, "f": False},
        ).scalar_one()


def test_enqueue_is_idempotent_and_skips_suppressed(db: Database, tmp_path: Path) -> None:
    lst = create_list(db, "news")
    rows = "".join(f"u{i}@example.com\n" for i in range(30))
    import_csv(db, "news", csv_file(tmp_path, "email\n" + rows))
    with db.session() as s:
        queries.add_suppressions(s, [("u3@example.com", "550 5.1.1", "bounce")], time.time())
    cid = _campaign(db, lst.id)
    assert queries.enqueue(db, cid, lst.id, time.time(), batch=7) == 30
    assert queries.enqueue(db, cid, lst.id, time.time(), batch=7) == 0
    with db.session() as s:
        states = dict(s.execute(select(Delivery.email, Delivery.state)).all())
    assert len(states) == 30
    assert states["u3@example.com"] == "skipped"
    assert sum(v == "queued" for v in states.values()) == 29


def test_claims_do_not_overlap_and_expired_leases_come_back(db: Database, tmp_path: Path) -> None:
    lst = create_list(db, "news")
    import_csv(
        db,
        "news",
        csv_file(tmp_path, "email\n" + "".join(f"u{i}@example.com\n" for i in range(10))),
    )
    cid = _campaign(db, lst.id)
    now = time.time()
    queries.enqueue(db, cid, lst.id, now)
    a = queries.claim(db, [cid], "worker-a", now, 60, 6)
    b = queries.claim(db, [cid], "worker-b", now, 60, 6)
    assert len(a) == 6 and len(b) == 4
    assert not {r.id for r in a} & {r.id for r in b}
    assert queries.claim(db, [cid], "worker-c", now + 30, 60, 10) == []
    again = queries.claim(db, [cid], "worker-c", now + 61, 60, 10)  # leases expired
    assert {r.id for r in again} == {r.id for r in a} | {r.id for r in b}
    assert all(r.attempts == 2 for r in again)


def test_record_and_release(db: Database, tmp_path: Path) -> None:
    lst = create_list(db, "news")
    import_csv(db, "news", csv_file(tmp_path, "email\na@example.com\nb@example.com\n"))
    cid = _campaign(db, lst.id)
    now = time.time()
    queries.enqueue(db, cid, lst.id, now)
    first, second = queries.claim(db, [cid], "w", now, 60, 10)
    queries.record(
        db,
        [
            queries.Result(
                first.id,
                cid,
                first.subscriber_id,
                first.email,
                "bounced",
                1,
                None,
                550,
                "5.1.1",
                "no such user",
                "mx.example.com",
                "none",
                "bounced",
                suppress=True,
            )
        ],
        now,
    )
    queries.release(db, "w", [second.id], now)
    with db.session() as s:
        rows = {d.email: d for d in s.scalars(select(Delivery)).all()}
        assert rows[first.email].state == "bounced"
        assert rows[first.email].last_enhanced == "5.1.1"
        assert rows[second.email].state == "queued" and rows[second.email].attempts == 0
        assert s.scalar(text("SELECT kind FROM events")) == "bounced"
        assert s.scalar(text("SELECT email FROM suppressions")) == first.email
    assert queries.pending(db, cid)[0] == 1


def test_claim_skips_addresses_suppressed_or_unsubscribed_after_enqueue(
    db: Database, tmp_path: Path
) -> None:
    lst = create_list(db, "news")
    import_csv(
        db, "news", csv_file(tmp_path, "email\na@example.com\nb@example.com\nc@example.com\n")
    )
    cid = _campaign(db, lst.id)
    now = time.time()
    queries.enqueue(db, cid, lst.id, now)
    with db.session() as s:
        queries.add_suppressions(s, [("a@example.com", "complaint", "fbl")], now)
        s.execute(
            text(
                "UPDATE memberships SET status = 'unsubscribed' WHERE subscriber_id = "
                "(SELECT id FROM subscribers WHERE email = 'b@example.com')"
            )
        )
    claimed = queries.claim(db, [cid], "w", now, 60, 10)
    assert [r.email for r in claimed] == ["c@example.com"]
    with db.session() as s:
        rows = dict(
            s.execute(
                select(Delivery.email, Delivery.last_text).where(Delivery.state == "skipped")
            ).all()
        )
    assert rows == {"a@example.com": "suppressed", "b@example.com": "unsubscribed"}


def test_cancel_reaches_rows_of_a_dead_worker_and_rows_given_back_later(
    db: Database, tmp_path: Path
) -> None:
    from bulkmail.db import control

    lst = create_list(db, "news")
    import_csv(db, "news", csv_file(tmp_path, "email\na@example.com\nb@example.com\n"))
    cid = _campaign(db, lst.id)
    now = time.time()
    queries.enqueue(db, cid, lst.id, now - 200)
    (alive,) = queries.claim(db, [cid], "alive", now, 60, 1)
    (dead,) = queries.claim(db, [cid], "dead", now - 100, 60, 1)  # its lease ended at now-40
    control.transition(db, cid, "cancelled", now)
    assert control.cancel_pending(db, cid, now) == 1  # the dead worker's expired lease
    queries.release(db, "alive", [alive.id], now)  # the live one gives its row back later
    with db.session() as s:
        states = dict(s.execute(select(Delivery.email, Delivery.state)).all())
    assert states == {dead.email: "cancelled", alive.email: "cancelled"}


def test_a_late_failure_does_not_overwrite_another_workers_claim(
    db: Database, tmp_path: Path
) -> None:
    lst = create_list(db, "news")
    import_csv(db, "news", csv_file(tmp_path, "email\na@example.com\n"))
    cid = _campaign(db, lst.id)
    now = time.time()
    queries.enqueue(db, cid, lst.id, now - 200)
    (old,) = queries.claim(db, [cid], "slow", now - 100, 60, 1)
    (new,) = queries.claim(db, [cid], "fresh", now, 60, 1)  # the lease lapsed: reclaimed
    late = queries.Result(
        old.id,
        cid,
        old.subscriber_id,
        old.email,
        "deferred",
        1,
        now + 60,
        451,
        "4.4.2",
        "timeout",
        None,
        None,
        "deferred",
    )
    queries.record(db, [late], now, owner="slow")
    with db.session() as s:
        row = s.get(Delivery, new.id)
        assert (row.state, row.lease_owner) == ("sending", "fresh")
