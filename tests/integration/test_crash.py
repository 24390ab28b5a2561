"""A real ``bulkmail campaigns send`` process killed, stopped and run with several workers:
nobody lost, nobody sent twice except what was in flight at a hard kill."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time

import pytest

from bulkmail.delivery.owners import STALE_HEARTBEAT_SECONDS
from bulkmail.delivery.runner import _engine_pass
from bulkmail.peers.smtp import Script
from tests.integration.world import World


def start_send(world: World, cid: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BULKMAIL_SECRET": "world-secret-0123456789abcdef"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bulkmail",
            "--config",
            str(world.config_path()),
            "campaigns",
            "send",
            str(cid),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_messages(world: World, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(world.received()) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the send did not progress"
        time.sleep(0.02)


def slow_world(world: World, n: int) -> list[str]:
    world.configure("engine", lease_seconds=2.0, site_lease_seconds=2.0, flush_interval=0.1)
    world.configure("limits.default", connections=4, messages_per_connection=50)
    world.mx("a.test", (10, "127.0.0.2"), script=Script(delay=0.01))
    world.mx("b.test", (10, "127.0.0.3"), script=Script(delay=0.01))
    people = [f"u{i}@{'ab'[i % 2]}.test" for i in range(n)]
    world.subscribers(people)
    return people


def test_kill_9_then_resume_loses_nobody(world: World) -> None:
    people = slow_world(world, 300)
    cid = world.campaign()
    proc = start_send(world, cid)
    wait_for_messages(world, 60, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    in_flight = {
        r[0]
        for r in world.sql(
            "SELECT email FROM deliveries WHERE campaign_id = :c AND state = 'sending'", c=cid
        )
    }
    time.sleep(0.3)  # let the servers finish what was already on the wire
    report = world.send(cid, wait=True)
    assert report.state == "finished"
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)  # nobody lost
    duplicates = {r for r, n in received.items() if n > 1}
    assert duplicates <= in_flight, duplicates - in_flight  # only what was in flight
    assert max(received.values()) <= 2
    assert {d.state for d in world.states(cid).values()} == {"sent"}


def test_sigterm_finishes_in_flight_and_exits_cleanly(world: World) -> None:
    people = slow_world(world, 300)
    cid = world.campaign()
    proc = start_send(world, cid)
    wait_for_messages(world, 40, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "interrupted" in out
    assert world.sql("SELECT COUNT(*) FROM deliveries WHERE state = 'sending'")[0][0] == 0
    sent_before = {e for e, d in world.states(cid).items() if d.state == "sent"}
    assert sent_before == set(world.recipients_received())  # recorded exactly what went out
    world.send(cid, wait=True)
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)
    assert max(received.values()) == 1  # a graceful stop never duplicates


@pytest.mark.parametrize("workers", [2])
def test_several_worker_processes_send_each_message_once(world: World, workers: int) -> None:
    world.configure("limits.default", connections=4, messages_per_connection=20)
    world.mx("a.test", (10, "127.0.0.2"))
    world.mx("b.test", (10, "127.0.0.3"))
    people = [f"u{i}@{'ab'[i % 2]}.test" for i in range(400)]
    world.subscribers(people)
    cid = world.campaign()
    proc = start_send(world, cid, "--workers", str(workers), "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert '"state": "finished"' in out
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people) and max(received.values()) == 1
    for server in world.servers.values():
        assert server.max_concurrent_sessions <= 4


def test_kill_9_then_restart_resumes_at_once_with_the_default_leases(world: World) -> None:
    # lease_seconds (300 s) and site_lease_seconds (30 s) as shipped: the restart must not
    # wait for the dead process's leases (issue 11 §6: more than 4 minutes before).
    world.configure("engine", flush_interval=0.1)
    world.configure("limits.default", connections=4, messages_per_connection=50)
    world.mx("a.test", (10, "127.0.0.2"), script=Script(delay=0.01))
    world.mx("b.test", (10, "127.0.0.3"), script=Script(delay=0.01))
    people = [f"u{i}@{'ab'[i % 2]}.test" for i in range(600)]
    world.subscribers(people)
    cid = world.campaign()
    proc = start_send(world, cid)
    wait_for_messages(world, 150, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    in_flight = {
        r[0]
        for r in world.sql(
            "SELECT email FROM deliveries WHERE campaign_id = :c AND state = 'sending'", c=cid
        )
    }
    assert in_flight  # killed mid-send: these rows are under the dead process's leases
    time.sleep(0.3)  # let the servers finish what was already on the wire
    restart = start_send(world, cid, "--json")
    out, err = restart.communicate(timeout=60)  # a wait for the leases would take 300 s
    assert restart.returncode == 0, err
    assert '"state": "finished"' in out, out
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)  # nobody lost
    duplicates = {r for r, n in received.items() if n > 1}
    assert duplicates <= in_flight, duplicates - in_flight  # only what was in flight
    assert max(received.values()) <= 2
    assert {d.state for d in world.states(cid).values()} == {"sent"}


@pytest.mark.slow
def test_a_stopped_sender_past_its_lease_drops_what_another_took(world: World) -> None:
    # A sends one message, then waits 4 s for its rate; stopped meanwhile (SIGSTOP) past its
    # 2 s lease and past the 30 s a heartbeat may be late, it looks dead: another send takes
    # and delivers the rest. Resumed (SIGCONT), A must learn from its renewal and its
    # pre-send check that the rows are no longer its own, and send none of them.
    world.configure("engine", lease_seconds=2.0, site_lease_seconds=2.0, flush_interval=0.05)
    world.configure("limits.default", connections=1, messages_per_connection=100, rate=0.25)
    world.mx("a.test", (10, "127.0.0.2"))
    people = [f"u{i}@a.test" for i in range(12)]
    world.subscribers(people)
    cid = world.campaign()
    first = start_send(world, cid)
    wait_for_messages(world, 1, first)
    deadline = time.monotonic() + 2
    while world.sql("SELECT COUNT(*) FROM deliveries WHERE state = 'sent'")[0][0] < 1:
        assert time.monotonic() < deadline, "the first message was not recorded"
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        assert len(world.received()) == 1  # stopped in its rate pause, nothing on the wire
        time.sleep(STALE_HEARTBEAT_SECONDS + 2)  # past its lease and its heartbeat window
        world.configure("limits.default", rate=0)
        report = world.send(cid, wait=True)  # a second sender takes the lapsed rows
        assert report.state == "finished"
        assert len(world.received()) == len(people)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)
    assert max(received.values()) == 1, [r for r, n in received.items() if n > 1]
    assert world.sql("SELECT COUNT(*) FROM deliveries WHERE state <> 'sent'")[0][0] == 0


def test_an_engine_pass_gives_the_callers_signal_handlers_back(world: World) -> None:
    # ``worker`` runs pass after pass with its own SIGTERM handler in between; asyncio left
    # the default there, so a SIGTERM between two passes killed it instead of stopping it.
    def mine(_sig: int, _frame: object) -> None:
        pass

    old = signal.signal(signal.SIGTERM, mine)
    db = world.db()
    try:
        asyncio.run(_engine_pass(world.settings(), db, []))
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)
        db.dispose()
