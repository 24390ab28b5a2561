"""The engine's pure rules: who is dead, when a row is surely ours, what moves the streak."""

from __future__ import annotations

from bulkmail.db.models import BOUNCED, DEFERRED, EXPIRED, FAILED, SENT
from bulkmail.db.queries import Result
from bulkmail.delivery.autopause import LocalStreak, is_site_failure, streak_changes
from bulkmail.delivery.leases import LeaseBook
from bulkmail.delivery.owners import dead_owners, local_pid, owner_id


def outcome(cid: int, state: str, code: int = 451, enhanced: str | None = None) -> Result:
    return Result(1, cid, 1, "a@b.test", state, 1, None, code, enhanced, "", None, None, None)


def test_dead_owners_are_gone_here_silent_or_without_a_heartbeat_never_me() -> None:
    seen = {"me": 100.0, "fresh": 99.0, "old": 60.0, "gone": 100.0}
    dead = dead_owners(
        ["me", "fresh", "old", "gone", "unknown"],
        seen,
        me="me",
        now=100.0,
        stale_after=30.0,
        gone=lambda o: o == "gone",
    )
    assert dead == {"old", "gone", "unknown"}
    assert dead_owners(["me"], {}, me="me", now=100.0, gone=lambda o: True) == set()


def test_an_owner_id_names_this_process_only_with_the_same_host_tag() -> None:
    mine = owner_id()
    host, pid, _rand, tag = mine.split(":")
    assert local_pid(mine) == int(pid)
    assert local_pid(f"{host}:{pid}:x:{'0' * 8 if tag != '0' * 8 else '1' * 8}") is None
    assert local_pid(f"{host}:{pid}:x:-") is None
    assert local_pid("old-style-host:123:abcd") is None  # ids of older engines: heartbeat only


def test_a_row_is_surely_ours_while_held_and_our_heartbeat_is_fresh() -> None:
    book = LeaseBook(lease=3.0, stale_after=30.0)
    book.held([1, 2], now=999.0)
    assert not book.sure(1, 999.0)  # no heartbeat written yet
    book.beat(1000.0)
    book.held([1, 2], now=1000.0)
    assert book.sure(1, 1009.0)  # the lease lapsed, but a live holder keeps its rows
    assert not book.sure(1, 1011.0)  # our heartbeat is 11 s old: peers may think us dead
    assert book.renewed([1, 2], {1}, now=1005.0) == [2]
    assert book.sure(1, 1005.0) and not book.sure(2, 1005.0)
    book.forget([1])
    assert not book.sure(1, 1005.0)
    assert not book.sure(3, 1005.0)  # never claimed


def test_after_a_gap_in_our_heartbeats_every_row_is_in_doubt_until_renewed() -> None:
    # Resumed after SIGSTOP, the monitor may beat before a lane sends: a fresh heartbeat
    # must not vouch for rows that peers may have taken while we were silent.
    book = LeaseBook(lease=300.0, stale_after=30.0)
    assert book.beat(1000.0)  # the first beat: nothing held yet
    book.held([1, 2], now=1000.0)
    assert not book.beat(1001.0) and book.sure(1, 1001.5)
    assert book.beat(1040.0)  # 39 s of silence
    assert not book.sure(1, 1040.0) and not book.sure(2, 1040.0)
    assert book.renewed([1, 2], {2}, now=1040.0) == [1]
    assert book.sure(2, 1040.5) and not book.sure(1, 1040.5)


def test_site_failures_include_refusals_tls_and_policy_not_greylisting_or_recipients() -> None:
    assert is_site_failure(outcome(1, DEFERRED, 451, "4.4.1"))  # connection refused
    assert is_site_failure(outcome(1, EXPIRED, 451, "4.4.2"))  # lost, last attempt
    assert is_site_failure(outcome(1, DEFERRED, 451, "4.7.5"))  # TLS required, unavailable
    assert is_site_failure(outcome(1, DEFERRED, 421, None))
    assert is_site_failure(outcome(1, BOUNCED, 554, "5.7.1"))
    assert not is_site_failure(outcome(1, DEFERRED, 451, "4.7.1"))  # greylisted
    assert not is_site_failure(outcome(1, BOUNCED, 550, "5.1.1"))
    assert not is_site_failure(outcome(1, FAILED, 0, None))


def test_streak_changes_reset_at_the_last_success_per_campaign() -> None:
    refused = "4.4.1"
    batch = [
        outcome(1, DEFERRED, 451, refused),
        outcome(1, SENT, 250),
        outcome(1, DEFERRED, 451, refused),
        outcome(1, DEFERRED, 451, refused),
        outcome(2, DEFERRED, 451, refused),
        outcome(3, BOUNCED, 550, "5.1.1"),  # says nothing about the site: no change
    ]
    assert streak_changes(batch) == {1: (True, 2), 2: (False, 1)}
    assert streak_changes([outcome(4, SENT, 250)]) == {4: (True, 0)}


def test_the_local_streak_reaches_the_limit_at_once_and_a_success_resets_it() -> None:
    streak = LocalStreak(limit=3)
    blocked = outcome(1, BOUNCED, 554, "5.7.1")
    assert [streak.add(blocked) for _ in range(2)] == [0, 0]
    assert streak.add(outcome(1, SENT, 250)) == 0
    assert [streak.add(blocked) for _ in range(4)] == [0, 0, 3, 4]
    assert streak.add(outcome(2, BOUNCED, 550, "5.1.1")) == 0  # a recipient's own bounce
    assert LocalStreak(limit=0).add(blocked) == 0  # 0: auto-pause off
