"""Soft bounces that add up (issue 13 §5): a mailbox full or inactive on N deliveries within D
days is suppressed with that reason; a policy or spam block never counts. The deliveries are
really sent (world), the receivers' DSNs for those very messages are imported."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.bounces.escalate import SoftLimit
from bulkmail.bounces.process import import_files
from bulkmail.db import queries
from bulkmail.db.engine import Database
from bulkmail.peers.smtp import Received, Script
from tests.integration.test_bounces import dsn
from tests.integration.test_database import _campaign, csv_file
from tests.integration.world import World

FULL, LISTED, FINE = "full@a.test", "listed@a.test", "fine@a.test"


def three_campaigns(w: World) -> list[dict[str, Received]]:
    """Three campaigns to the same people; per campaign, what each received."""
    w.mx("a.test", (10, "127.0.0.2"))
    w.subscribers([FULL, LISTED, FINE])
    sent = []
    seen = 0
    for _ in range(3):
        w.send(w.campaign())
        got = w.received()
        sent.append({m.rcpt_tos[0]: m for m in got[seen:]})
        seen = len(got)
    return sent


def suppressed(w: World) -> dict[str, str]:
    return {e: r for e, r in w.sql("SELECT email, reason FROM suppressions")}


def report(w: World, tmp: Path, name: str, data: bytes) -> None:
    path = tmp / f"{name}.eml"
    path.write_bytes(data)
    import_files(w.settings(), w.db(), [path])


def test_a_full_mailbox_on_three_deliveries_is_suppressed_a_blocklist_never(
    world: World, tmp_path: Path
) -> None:
    campaigns = three_campaigns(world)
    for n, got in enumerate(campaigns):
        report(world, tmp_path, f"full{n}", dsn(got[FULL], "5.2.2", "552 5.2.2 Mailbox full"))
        report(
            world,
            tmp_path,
            f"listed{n}",
            dsn(got[LISTED], "5.7.1", "554 5.7.1 blocked using zen.spamhaus.org"),
        )
        if n < 2:
            assert suppressed(world) == {}, n  # one or two full-mailbox failures: not yet
    reasons = suppressed(world)
    assert list(reasons) == [FULL]
    assert reasons[FULL].startswith("soft bounces: 3 deliveries in 14 days")
    assert "5.2.2" in reasons[FULL]


def test_the_limit_is_configurable_and_the_same_delivery_counts_once(
    world: World, tmp_path: Path
) -> None:
    world.configure("bounces", soft_bounce_limit=2, soft_bounce_days=14)
    first, second, _third = three_campaigns(world)
    inactive = "550 5.2.1 The email account that you tried to reach is inactive"
    report(world, tmp_path, "a", dsn(first[FULL], "5.2.1", inactive))
    report(world, tmp_path, "b", dsn(first[FULL], "4.2.2", "452 4.2.2 Over quota"))  # same one
    assert suppressed(world) == {}
    report(world, tmp_path, "c", dsn(second[FULL], "5.2.2", "552 5.2.2 Mailbox full"))
    assert list(suppressed(world)) == [FULL]


def test_outside_the_window_failures_do_not_count(world: World, tmp_path: Path) -> None:
    world.configure("bounces", soft_bounce_days=1)
    campaigns = three_campaigns(world)
    for n, got in enumerate(campaigns):
        report(world, tmp_path, f"f{n}", dsn(got[FULL], "5.2.2", "552 5.2.2 Mailbox full"))
        if n < 2:  # the earlier failures are made old
            world.sql("UPDATE events SET created_at = created_at - 2 * 86400")
    assert suppressed(world) == {}


# -- at SMTP time: the receiver says so in the session, no DSN ever comes ---------------------

QUOTA_RCPT, QUOTA_DATA = "quota@a.test", "quota@b.test"
GREY, BLOCKED = "grey@a.test", "blocked@a.test"


def test_full_mailbox_replies_at_smtp_time_add_up_greylisting_and_blocks_never(
    world: World,
) -> None:
    """452 4.2.2 at RCPT TO (deferred) and 552 5.2.2 at the final dot (bounced, not
    suppressed at once) on three campaigns suppress the address in the third send itself;
    a greylisting deferral and a blocklist refusal on the same three never do. The first two
    campaigns' deferred rows for it are skipped at claim afterwards, like any suppression."""
    world.configure("retry", intervals=["1h"], max_age="2d")  # deferred rows wait, not retried
    world.mx(
        "a.test",
        (10, "127.0.0.2"),
        script=Script(
            rcpt_replies={
                QUOTA_RCPT: "452 4.2.2 Mailbox full, try again later",
                GREY: "451 4.7.1 Greylisted, please try again later",
                BLOCKED: "554 5.7.1 Service unavailable; blocked using zen.spamhaus.org",
            }
        ),
    )
    world.mx("b.test", (10, "127.0.0.3"), script=Script(data_reply="552 5.2.2 Mailbox full"))
    world.subscribers([QUOTA_RCPT, QUOTA_DATA, GREY, BLOCKED, FINE])
    campaigns = []
    for n in range(3):
        campaigns.append(world.campaign())
        world.send(campaigns[-1])
        if n < 2:
            assert suppressed(world) == {}, n  # one or two failures: not yet
    reasons = suppressed(world)
    assert sorted(reasons) == [QUOTA_RCPT, QUOTA_DATA]
    assert reasons[QUOTA_RCPT].startswith("soft bounces: 3 deliveries in 14 days")
    assert "452 4.2.2 Mailbox full" in reasons[QUOTA_RCPT]
    assert "552 5.2.2" in reasons[QUOTA_DATA]
    assert world.states(campaigns[0])[QUOTA_RCPT].state == "deferred"
    world.sql("UPDATE deliveries SET next_attempt_at = 0 WHERE state = 'deferred'")
    world.send(campaigns[0])  # the quota row comes due again: skipped, the greylisted one sent
    first = world.states(campaigns[0])
    assert first[QUOTA_RCPT].state == "skipped"
    assert first[GREY].state == "deferred"  # still greylisted, still not counted
    assert sorted(suppressed(world)) == [QUOTA_RCPT, QUOTA_DATA]


def test_the_engine_uses_the_configured_limit(world: World) -> None:
    """``[bounces] soft_bounce_limit`` reaches the engine: 2 here, so the second send does it."""
    world.configure("bounces", soft_bounce_limit=2)
    world.mx(
        "a.test",
        (10, "127.0.0.2"),
        script=Script(rcpt_replies={QUOTA_RCPT: "452 4.2.2 Over quota"}),
    )
    world.subscribers([QUOTA_RCPT, FINE])
    world.send(world.campaign())
    assert suppressed(world) == {}
    world.send(world.campaign())
    assert list(suppressed(world)) == [QUOTA_RCPT]
    assert suppressed(world)[QUOTA_RCPT].startswith("soft bounces: 2 deliveries in 14 days")


def test_a_batch_is_checked_with_one_query_and_only_when_it_has_such_failures(
    db: Database, tmp_path: Path
) -> None:
    """The recorder's cost: a batch of sends, blocks and greylisting reads no events; a batch
    with two full mailboxes reads them once, for both (limit 1 here: each suppresses)."""
    people = [f"p{n}@a.test" for n in range(6)]
    lst = create_list(db, "news")
    import_csv(db, "news", csv_file(tmp_path, "email\n" + "\n".join(people) + "\n"))
    cid = _campaign(db, lst.id)
    now = time.time()
    queries.enqueue(db, cid, lst.id, now)
    rows = queries.claim(db, [cid], "w", now, 60, 10)

    def result(row: Any, state: str, code: int, enhanced: str, detail: str) -> queries.Result:
        kind = None if state == "sent" else state
        later = now + 3600 if state == "deferred" else None
        return queries.Result(
            *(row.id, cid, row.subscriber_id, row.email, state, 1, later),
            *(code, enhanced, detail, "mx.a.test", "none", kind),
        )

    reads: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if "FROM events" in statement:
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    limit = SoftLimit(1, 14)
    queries.record(
        db,
        [
            result(rows[0], "sent", 250, "2.0.0", "OK"),
            result(rows[1], "bounced", 554, "5.7.1", "blocked using zen.spamhaus.org"),
            result(rows[2], "deferred", 451, "4.7.1", "Greylisted, try again later"),
        ],
        now,
        soft_limit=limit,
    )
    assert reads == []
    assert suppressed_in(db) == set()
    queries.record(
        db,
        [
            result(rows[3], "deferred", 452, "4.2.2", "Mailbox full"),
            result(rows[4], "bounced", 552, "5.2.2", "Mailbox full"),
            result(rows[5], "sent", 250, "2.0.0", "OK"),
        ],
        now,
        soft_limit=limit,
    )
    event.remove(db.engine, "before_cursor_execute", seen)
    assert len(reads) == 1
    assert suppressed_in(db) == {rows[3].email, rows[4].email}


def suppressed_in(db: Database) -> set[str]:
    with db.session() as s:
        return {e for (e,) in s.execute(text("SELECT email FROM suppressions")).all()}
