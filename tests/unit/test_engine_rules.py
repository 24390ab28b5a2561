"""The engine's pure rules: who is dead, when a row is surely ours, what moves the streak."""

from __future__ import annotations

from bulkmail.db.models import BOUNCED, DEFERRED, EXPIRED, FAILED, SENT
from bulkmail.db.queries import Result
from bulkmail.delivery.autopause import is_site_failure, streak_changes
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


def test_a_row_is_surely_ours_only_with_lease_margin_and_a_fresh_heartbeat() -> None:
    book = LeaseBook(lease=300.0, stale_after=30.0)
    book.held([1, 2], now=1000.0)
    assert not book.sure(1, 1000.0)  # no heartbeat written yet
    book.beat(1000.0)
    assert book.sure(1, 1009.0)
    assert not book.sure(1, 1011.0)  # our heartbeat is 11 s old: peers may think us dead
    book.beat(1294.0)
    assert not book.sure(1, 1295.0)  # within the 10 s margin of its lease: ask the database
    assert book.renewed([1, 2], {1}, now=1005.0) == [2]
    book.beat(1200.0)
    assert book.sure(1, 1205.0) and not book.sure(2, 1205.0)
    assert not book.sure(3, 1205.0)  # never claimed


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
