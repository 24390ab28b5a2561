"""Lease queries on SQLite and PostgreSQL: a renewal answers what is still held, dead engines'
leases are reclaimed at once, and the failure streak is shared by every engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.db import control, queries
from bulkmail.db.engine import Database
from bulkmail.db.models import DEFERRED, SENT
from bulkmail.delivery import owners
from bulkmail.delivery.autopause import streak_changes
from tests.integration.test_database import _campaign, csv_file


def campaign_with(db: Database, tmp_path: Path, n: int) -> int:
    lst = create_list(db, "news")
    import_csv(
        db, "news", csv_file(tmp_path, "email\n" + "".join(f"u{i}@a.test\n" for i in range(n)))
    )
    cid = _campaign(db, lst.id)
    queries.enqueue(db, cid, lst.id, time.time() - 1000)
    return cid


def result(row: queries.Claimed, state: str, enhanced: str | None = None) -> queries.Result:
    code = 250 if state == SENT else 451
    return queries.Result(
        row.id, row.campaign_id, row.subscriber_id, row.email, state, row.attempts,
        time.time() + 60 if state == DEFERRED else None, code, enhanced, "text", None, None,
        None if state == SENT else state,
    )  # fmt: skip


def owner_state(db: Database, row_id: int) -> tuple[str, str | None]:
    with db.session() as s:
        row = s.execute(
            text("SELECT state, lease_owner FROM deliveries WHERE id = :i"), {"i": row_id}
        ).one()
    return row[0], row[1]


def test_renew_returns_only_the_rows_still_held(db: Database, tmp_path: Path) -> None:
    cid = campaign_with(db, tmp_path, 3)
    now = time.time()
    a, b, c = queries.claim(db, [cid], "slow", now - 100, 60, 3)  # leases ended at now - 40
    assert queries.renew(db, "slow", [], now, 60) == set()
    (taken,) = queries.claim(db, [cid], "fresh", now, 60, 1)  # one lapsed row taken over
    queries.record(db, [result(c, SENT)], now, owner="slow")  # one answered meanwhile
    held = queries.renew(db, "slow", [a.id, b.id, c.id], now, 60)
    assert held == {a.id, b.id, c.id} - {taken.id, c.id}
    assert queries.renew(db, "fresh", [taken.id], now, 60) == {taken.id}
    assert queries.renew(db, "someone-else", [a.id, b.id], now, 60) == set()


def test_a_late_sent_is_recorded_and_the_new_holder_learns_it_lost_the_row(
    db: Database, tmp_path: Path
) -> None:
    # The slow engine's message went out; the engine that took the lapsed row over must not
    # send a second copy: its renewal (and pre-send check) no longer returns the row.
    cid = campaign_with(db, tmp_path, 1)
    now = time.time()
    (old,) = queries.claim(db, [cid], "slow", now - 100, 60, 1)
    (new,) = queries.claim(db, [cid], "fresh", now, 60, 1)
    assert old.id == new.id
    queries.record(db, [result(old, SENT)], now, owner="slow")
    assert owner_state(db, new.id) == (SENT, None)
    assert queries.renew(db, "fresh", [new.id], now, 60) == set()


def test_reclaim_frees_dead_engines_rows_and_slots_and_keeps_live_ones(
    db: Database, tmp_path: Path
) -> None:
    cid = campaign_with(db, tmp_path, 4)
    now = time.time()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process of this host that has ended: its pid is free
    killed = f"{owners.host_name()}:{gone.pid}:deadbeef:{owners.host_tag()}"
    silent, live, me = "far:1:0badf00d:ffffffff", "far:2:c0ffee00:ffffffff", owners.owner_id()
    for who, seen in ((killed, now), (silent, now - 60), (live, now), (me, now)):
        control.heartbeat(db, who, seen, 5)
    rows = {
        who: queries.claim(db, [cid], who, now, 300, 1)[0] for who in (killed, silent, live, me)
    }
    assert control.acquire_slots(db, "mx.a.test", 4, killed, 1, now, 30)
    assert control.acquire_slots(db, "mx.a.test", 4, live, 1, now, 30)
    holders, seen = control.lease_holders(db)
    assert holders == {killed, silent, live, me}
    dead = owners.dead_owners(holders, seen, me=me, now=now)
    assert dead == {killed, silent}  # gone on this host; heartbeat 60 s old
    assert control.reclaim(db, sorted(dead), now) == 2
    again = {r.id for r in queries.claim(db, [cid], "next", now + 0.001, 300, 10)}
    assert again == {rows[killed].id, rows[silent].id}  # at once, not after 300 s
    assert control.acquire_slots(db, "mx.a.test", 4, "next", 4, now, 30) == {
        f"mx.a.test|{k}" for k in range(4)
    } - control.renew_slots(db, live, now, 30)  # the dead one's slot is free, the live one's not
    assert queries.renew(db, me, [rows[me].id], now, 300) == {rows[me].id}


def test_a_killed_process_whose_short_lease_lapsed_is_still_reclaimed_at_once(
    db: Database, tmp_path: Path
) -> None:
    # A lapsed lease with a fresh heartbeat is kept for a live holder; a holder whose process
    # is gone must not keep it for the 30 s its last heartbeat stays fresh.
    cid = campaign_with(db, tmp_path, 1)
    now = time.time()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = f"{owners.host_name()}:{gone.pid}:deadbeef:{owners.host_tag()}"
    control.heartbeat(db, killed, now - 1, 5)
    (row,) = queries.claim(db, [cid], killed, now - 10, 3, 1)  # lease ended 7 s ago
    alive = now - owners.STALE_HEARTBEAT_SECONDS
    assert queries.claim(db, [cid], "next", now, 60, 1, alive_since=alive) == []
    holders, seen = control.lease_holders(db)
    assert owners.dead_owners(holders, seen, me="next", now=now) == {killed}
    assert control.reclaim(db, [killed], now) == 1
    taken = queries.claim(db, [cid], "next", now + 0.001, 60, 1, alive_since=alive)
    assert [r.id for r in taken] == [row.id]


def test_a_running_process_here_or_any_process_elsewhere_is_not_judged_dead_by_pid() -> None:
    here = f"{owners.host_name()}:{os.getpid()}:abcdef01:{owners.host_tag()}"
    assert not owners.dead_here(here)
    other_host = f"elsewhere:{2**22 + 7}:abcdef01:{owners.host_tag()}"
    assert not owners.dead_here(other_host)  # not ours to judge by pid: only by heartbeat


def test_the_failure_streak_is_shared_reset_by_a_success_and_by_running(
    db: Database, tmp_path: Path
) -> None:
    cid = campaign_with(db, tmp_path, 6)
    now = time.time()
    rows = queries.claim(db, [cid], "a", now, 60, 6)
    refused = [result(r, DEFERRED, "4.4.1") for r in rows]
    assert control.count_failures(db, streak_changes(refused[:2])) == {cid: 2}  # engine a
    assert control.count_failures(db, streak_changes(refused[2:5])) == {cid: 5}  # engine b
    mixed = [refused[0], result(rows[5], SENT), refused[1]]
    assert control.count_failures(db, streak_changes(mixed)) == {cid: 1}
    assert control.count_failures(db, streak_changes(refused[:3])) == {cid: 4}
    assert control.count_failures(db, streak_changes([result(rows[5], SENT)])) == {cid: 0}
    with db.session() as s:
        assert s.execute(text("SELECT failure_streak FROM campaigns")).scalar_one() == 0
    assert control.count_failures(db, streak_changes(refused[:3])) == {cid: 3}
    control.transition(db, cid, "paused", now, from_states=["running"])
    control.transition(db, cid, "running", now, from_states=["paused"])  # resumed: fresh
    with db.session() as s:
        assert s.execute(text("SELECT failure_streak FROM campaigns")).scalar_one() == 0


def test_a_live_holder_late_to_renew_keeps_its_rows_and_slots(db: Database, tmp_path: Path) -> None:
    # Under load a live engine can be late to renew a 3 s lease; only a holder whose
    # heartbeat is also stale loses its rows and slots (issue 12: duplicates under load).
    cid = campaign_with(db, tmp_path, 2)
    now = time.time()
    control.heartbeat(db, "late", now - 5, 5)  # alive: heartbeat 5 s old
    control.heartbeat(db, "stale", now - 40, 5)  # silent for 40 s
    (late,) = queries.claim(db, [cid], "late", now - 100, 3, 1)  # lease lapsed long ago
    (stale,) = queries.claim(db, [cid], "stale", now - 100, 3, 1)
    assert control.acquire_slots(db, "mx", 2, "late", 1, now - 100, 3) == {"mx|0"}
    assert control.acquire_slots(db, "mx", 2, "stale", 1, now - 100, 3) == {"mx|1"}
    alive = now - owners.STALE_HEARTBEAT_SECONDS
    taken = queries.claim(db, [cid], "next", now, 60, 10, alive_since=alive)
    assert [r.id for r in taken] == [stale.id]
    assert control.acquire_slots(db, "mx", 2, "next", 2, now, 3, alive_since=alive) == {"mx|1"}
    assert queries.renew(db, "late", [late.id], now, 3) == {late.id}
    assert [r.id for r in queries.claim(db, [cid], "lease-only", now + 10, 60, 10)] == [late.id]
