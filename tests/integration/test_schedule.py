"""Scheduling and campaign control with real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from bulkmail.cli.main import cli
from bulkmail.peers.smtp import Script
from tests.integration.world import SECRET, World


def bulkmail(world: World, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BULKMAIL_SECRET": SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "bulkmail", "--config", str(world.config_path()), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def cli_json(world: World, *args: str) -> dict:  # type: ignore[type-arg]
    out = CliRunner().invoke(
        cli, ["--config", str(world.config_path()), *args, "--json"], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds")


def slow_world(world: World, n: int, delay: float = 0.01) -> list[str]:
    world.configure("engine", lease_seconds=3.0, site_lease_seconds=3.0, flush_interval=0.1)
    world.configure("limits.default", connections=3, messages_per_connection=50)
    world.mx("a.test", (10, "127.0.0.2"), script=Script(delay=delay))
    world.mx("b.test", (10, "127.0.0.3"), script=Script(delay=delay))
    people = [f"u{i}@{'ab'[i % 2]}.test" for i in range(n)]
    world.subscribers(people)
    return people


def test_run_due_sends_a_due_campaign_and_skips_one_three_days_late(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers([f"u{i}@a.test" for i in range(5)])
    due = world.campaign()
    late = world.campaign()
    future = world.campaign()
    assert (
        cli_json(world, "campaigns", "schedule", str(due), "--at", iso(-timedelta(minutes=1)))[
            "state"
        ]
        == "scheduled"
    )
    cli_json(world, "campaigns", "schedule", str(late), "--at", iso(-timedelta(days=3)))
    cli_json(world, "campaigns", "schedule", str(future), "--at", iso(timedelta(days=1)))
    result = cli_json(world, "run-due")
    assert result["started"] == [due]
    states = {
        c: cli_json(world, "campaigns", "status", str(c))["state"] for c in (due, late, future)
    }
    assert states == {due: "finished", late: "missed", future: "scheduled"}
    assert len(world.received()) == 5  # only the due campaign's five messages
    # a missed campaign waits for the operator
    cli_json(world, "campaigns", "send", str(late))
    assert len(world.received()) == 10


def test_local_time_without_offset_uses_the_configured_timezone(world: World) -> None:
    world.configure("schedule", timezone="Asia/Tokyo")
    world.subscribers(["x@a.test"])
    cid = world.campaign()
    data = cli_json(world, "campaigns", "schedule", str(cid), "--at", "2030-01-01 09:00")
    assert data["scheduled_at"] == datetime(2030, 1, 1, 0, 0, tzinfo=UTC).timestamp()
    assert cli_json(world, "campaigns", "unschedule", str(cid))["state"] == "draft"


def test_two_run_due_processes_together_send_each_message_once(world: World) -> None:
    people = slow_world(world, 200, delay=0.005)
    cid = world.campaign()
    cli_json(world, "campaigns", "schedule", str(cid), "--at", iso(-timedelta(seconds=5)))
    first, second = bulkmail(world, "run-due"), bulkmail(world, "run-due")
    for proc in (first, second):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    if cli_json(world, "campaigns", "status", str(cid))["state"] != "finished":
        cli_json(world, "run-due")  # rows a process gave back to the other are due now
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)
    assert max(received.values()) == 1


def test_pause_then_resume_mid_send_sends_everyone_exactly_once(world: World) -> None:
    people = slow_world(world, 300, delay=0.05)
    cid = world.campaign()
    proc = bulkmail(world, "campaigns", "send", str(cid), "--wait")
    deadline = time.monotonic() + 60
    while len(world.received()) < 50:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    assert cli_json(world, "campaigns", "pause", str(cid))["state"] == "paused"
    out, err = proc.communicate(timeout=30)  # the send notices and stops
    assert proc.returncode == 0, err
    assert "paused" in out
    time.sleep(1.5)
    at_pause = len(world.received())
    time.sleep(1.5)
    assert len(world.received()) == at_pause  # nothing more goes out while paused
    assert at_pause < len(people)
    assert world.sql("SELECT COUNT(*) FROM deliveries WHERE state = 'sending'")[0][0] == 0
    assert cli_json(world, "campaigns", "resume", str(cid))["state"] == "running"
    assert cli_json(world, "campaigns", "send", str(cid), "--wait")["state"] == "finished"
    received = collections.Counter(world.recipients_received())
    assert set(received) == set(people)
    assert max(received.values()) == 1


def test_cancel_cancels_every_delivery_not_yet_sent(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"), script=Script(greylist=True))
    world.configure("retry", intervals=["1h"], max_age="1d")
    world.subscribers([f"u{i}@a.test" for i in range(4)])
    cid = world.campaign()
    world.send(cid)
    assert cli_json(world, "campaigns", "status", str(cid))["deferred"] == 4
    data = cli_json(world, "campaigns", "cancel", str(cid))
    assert (data["state"], data["cancelled"]) == ("cancelled", 4)
    status = cli_json(world, "campaigns", "status", str(cid))
    assert (status["cancelled"], status["deferred"]) == (4, 0)
    out = CliRunner().invoke(
        cli, ["--config", str(world.config_path()), "campaigns", "send", str(cid)]
    )
    assert out.exit_code == 1 and "cancelled" in out.stderr


def test_a_campaign_pauses_itself_after_consecutive_policy_failures(world: World) -> None:
    world.configure("schedule", pause_after_failures=10)
    world.configure("limits.default", connections=1)
    world.mx("a.test", (10, "127.0.0.2"), script=Script(mail_reply="554 5.7.1 Blocked: spam"))
    world.subscribers([f"u{i}@a.test" for i in range(200)])
    cid = world.campaign()
    report = world.send(cid, wait=True)
    assert report.state == "paused"
    status = cli_json(world, "campaigns", "status", str(cid))
    assert status["bounced"] < 100  # it stopped instead of burning through the list
    assert "consecutive" in cli_json(world, "campaigns", "show", str(cid))["reason"]


def test_worker_picks_up_work_and_stops_on_sigterm(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers([f"u{i}@a.test" for i in range(20)])
    proc = bulkmail(world, "worker", "--max-idle-sleep", "0.5")
    time.sleep(1.0)
    cid = world.campaign()
    cli_json(world, "campaigns", "schedule", str(cid), "--at", iso(-timedelta(seconds=1)))
    deadline = time.monotonic() + 30
    while cli_json(world, "campaigns", "status", str(cid))["state"] != "finished":
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"campaign {cid}: " in err and "-> finished" in err
    assert len(world.received()) == 20
