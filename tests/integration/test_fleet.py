"""A fleet of worker processes on PostgreSQL: claims with SKIP LOCKED, one holder per site,
fleet-wide connection limits, and a killed worker's work finished by the others."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.world import SECRET, World

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

SITES = [f"127.0.0.{n}" for n in range(2, 12)]  # ten destination domains, one MX host each


def build(world: World, n: int, connections: int) -> tuple[int, list[str]]:
    world.configure(
        "engine", lease_seconds=3.0, site_lease_seconds=3.0, flush_interval=0.1, batch_size=200
    )
    world.configure("limits.default", connections=connections, messages_per_connection=100)
    for i, ip in enumerate(SITES):
        world.mx(f"d{i}.test", (10, ip))
    people = [f"u{i}@d{i % len(SITES)}.test" for i in range(n)]
    world.subscribers(people)
    cid = world.campaign()
    world.sql(
        "UPDATE campaigns SET state = 'scheduled', scheduled_at = :t WHERE id = :c",
        t=(datetime.now(UTC) - timedelta(seconds=1)).timestamp(),
        c=cid,
    )
    return cid, people


def workers(world: World, count: int) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "BULKMAIL_SECRET": SECRET}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulkmail",
                "--config",
                str(world.config_path()),
                "worker",
                "--max-idle-sleep",
                "0.5",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]


def wait_until(predicate, timeout: float, procs) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        for p in procs:
            assert p.poll() is None or p.returncode == -signal.SIGKILL, p.communicate()
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.communicate(timeout=30)


def finished(world: World, cid: int) -> bool:
    return world.sql("SELECT state FROM campaigns WHERE id = :c", c=cid)[0][0] == "finished"


@pytest.mark.slow
def test_three_workers_deliver_20000_exactly_once_within_site_limits(world: World) -> None:
    cid, people = build(world, 20_000, connections=2)
    procs = workers(world, 3)
    try:
        wait_until(lambda: finished(world, cid), 240, procs)
    finally:
        stop(procs)
    received = collections.Counter(world.recipients_received())
    assert len(received) == len(people) and set(received) == set(people)
    assert max(received.values()) == 1
    for ip in SITES:
        assert world.servers[ip].max_concurrent_sessions <= 2, ip
    # Each worker stopped cleanly on SIGTERM and gave back what it held: no slot and no
    # heartbeat is left behind for the fleet to wait out.
    assert [p.returncode for p in procs] == [0, 0, 0], [p.returncode for p in procs]
    assert world.sql("SELECT site, owner FROM site_leases") == []
    assert world.sql("SELECT owner FROM workers") == []


@pytest.mark.slow
def test_a_killed_worker_is_replaced_by_the_others_after_its_leases_expire(world: World) -> None:
    cid, people = build(world, 4000, connections=2)
    for server in world.servers.values():  # slow enough to kill mid-way
        server.script.delay = 0.01
    procs = workers(world, 3)
    try:
        wait_until(lambda: len(world.received()) >= 800, 120, procs)
        victim = procs[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        owner = f":{victim.pid}:"
        in_flight = {
            r[0]
            for r in world.sql(
                "SELECT email FROM deliveries WHERE state = 'sending' AND lease_owner LIKE :o",
                o=f"%{owner}%",
            )
        }
        wait_until(lambda: finished(world, cid), 240, procs[1:])
    finally:
        stop(procs)
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)  # nothing lost
    duplicates = {r for r, n in received.items() if n > 1}
    assert duplicates <= in_flight  # only what the dead worker had in flight
