"""List-health brakes (issue 13 §6): a real send against peers that bounce, and complaints
imported mid-send; the campaign pauses with the reason once the rate passes the brake, and
policy blocks never count as a stale list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkmail.bounces import brakes
from bulkmail.bounces.process import import_files
from bulkmail.cli.main import cli as main_cli
from bulkmail.peers.smtp import Script
from tests.integration.test_bounces import arf, dsn
from tests.integration.world import World

PEOPLE = [f"p{i}@a.test" for i in range(10)]
LATE = "p9@a.test"  # deferred by the peer: the campaign is still running after the pass


def run_until_retry(w: World, rcpt_replies: dict[str, str]) -> int:
    w.mx("a.test", (10, "127.0.0.2"), script=Script(rcpt_replies=rcpt_replies))
    w.subscribers(PEOPLE)
    cid = w.campaign()
    w.send(cid)
    assert w.sql("SELECT state FROM campaigns WHERE id = :c", c=cid)[0][0] == "running"
    return cid


def campaign(w: World, cid: int) -> tuple[str, str]:
    state, reason = w.sql("SELECT state, state_reason FROM campaigns WHERE id = :c", c=cid)[0]
    return state, reason or ""


def imported(w: World, tmp: Path, name: str, data: bytes) -> dict:
    (tmp / name).write_bytes(data)
    return import_files(w.settings(), w.db(), [tmp / name]).as_dict()


def test_complaints_imported_mid_send_pause_the_campaign_at_the_rate(
    world: World, tmp_path: Path
) -> None:
    world.configure("bounces", complaint_brake_min_delivered=5, complaint_brake_rate=0.15)
    cid = run_until_retry(world, {LATE: "451 4.3.0 try later"})
    got = {m.rcpt_tos[0]: m for m in world.received()}
    out = imported(world, tmp_path, "one.eml", arf(got["p0@a.test"]))
    assert out["paused"] == [] and campaign(world, cid)[0] == "running"  # 1 of 9: 11%
    out = imported(world, tmp_path, "two.eml", arf(got["p1@a.test"]))
    state, reason = campaign(world, cid)
    assert state == "paused"
    assert reason.startswith("paused: complaint rate 22.22% (2 of 9 delivered)")
    assert out["paused"] == [{"campaign_id": cid, "reason": reason}]


def cli(w: World, *args: str) -> str:
    out = CliRunner().invoke(main_cli, ["--config", str(w.config_path()), *args])
    assert out.exit_code == 0, out.output
    return out.output


def test_status_list_and_report_show_the_rates_against_the_warning_levels_and_brakes(
    world: World, tmp_path: Path
) -> None:
    world.configure("bounces", complaint_brake_min_delivered=5, complaint_brake_rate=0.15)
    cid = run_until_retry(world, {LATE: "451 4.3.0 try later"})
    got = {m.rcpt_tos[0]: m for m in world.received()}
    status = json.loads(cli(world, "campaigns", "status", str(cid), "--json"))["list_health"]
    assert (status["complaints"], status["complaint_level"]) == (0, "ok")
    imported(world, tmp_path, "one.eml", arf(got["p0@a.test"]))  # 1 of 9: past the 0.1% warning
    status = json.loads(cli(world, "campaigns", "status", str(cid), "--json"))["list_health"]
    assert (status["complaints"], status["delivered"], status["complaint_level"]) == (
        1,
        9,
        "warning",
    )
    assert (status["complaint_warn_rate"], status["complaint_brake_rate"]) == (0.001, 0.15)
    text = cli(world, "campaigns", "status", str(cid))
    assert (
        "list health: complaints 11.11% (1 of 9 delivered): WARNING (warn 0.10%, brake 15.00%); "
        "hard bounces 0.00% (0 of 10 attempted): ok (warn 2.00%, brake 5.00% from 1,000 "
        "attempted)"
    ) in text
    header, line = cli(world, "campaigns", "list").splitlines()
    assert header.split()[-2:] == ["COMPLAINTS", "HARD"] and line.split()[-2:] == [
        "11.11%!",
        "0.00%",
    ]
    listed = json.loads(cli(world, "campaigns", "list", "--json"))[0]
    assert (listed["complaint_rate"], listed["complaint_level"]) == (round(1 / 9, 6), "warning")
    imported(world, tmp_path, "two.eml", arf(got["p1@a.test"]))  # 2 of 9: the brake, paused
    assert cli(world, "campaigns", "list").splitlines()[1].split()[-2:] == ["22.22%!!", "0.00%"]
    report = json.loads(cli(world, "campaigns", "report", str(cid), "--json"))["list_health"]
    assert (report["complaints"], report["complaint_level"]) == (2, "brake")
    assert "complaints 22.22% (2 of 9 delivered): AT THE BRAKE" in " ".join(
        cli(world, "campaigns", "report", str(cid)).split()
    )


def test_a_complaint_below_the_minimum_sample_does_not_pause(world: World, tmp_path: Path) -> None:
    cid = run_until_retry(world, {LATE: "451 4.3.0 try later"})  # default: 1,000 delivered
    got = {m.rcpt_tos[0]: m for m in world.received()}
    imported(world, tmp_path, "one.eml", arf(got["p0@a.test"]))
    assert campaign(world, cid)[0] == "running"


def test_hard_bounces_at_smtp_time_brake_a_stale_list_policy_blocks_do_not(
    world: World, tmp_path: Path
) -> None:
    world.configure("bounces", bounce_brake_min_attempts=5, bounce_brake_rate=0.2)
    replies = {LATE: "451 4.3.0 try later"}
    replies |= {p: "554 5.7.1 blocked using zen.spamhaus.org" for p in PEOPLE[:4]}
    replies |= {p: "550 5.1.1 no such user" for p in PEOPLE[4:5]}
    cid = run_until_retry(world, replies)
    got = {m.rcpt_tos[0]: m for m in world.received()}
    # A bounce run touching the campaign evaluates its brakes: 1 hard of 10 is under 20%.
    imported(world, tmp_path, "a.eml", dsn(got["p5@a.test"], "4.4.1", "timeout", "delayed"))
    assert campaign(world, cid)[0] == "running"
    # A DSN after a 250: p6's mailbox does not exist. 2 of 10 now: the brake.
    imported(world, tmp_path, "b.eml", dsn(got["p6@a.test"], "5.1.1", "550 5.1.1 unknown"))
    state, reason = campaign(world, cid)
    assert state == "paused"
    assert reason.startswith("paused: hard-bounce rate 20.00% (2 of 10 attempted)")


def test_a_stale_list_pauses_mid_send_on_its_smtp_time_hard_bounces(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``bounces`` run at all: the engine checks the brakes while it sends, so a list
    whose first recipients hard-bounce at RCPT TO stops before the rest is sent."""
    monkeypatch.setattr(brakes, "CHECK_SECONDS", 0.0)  # every monitor tick (1 s) ...
    monkeypatch.setattr(brakes.Watch, "SHARE", 1)  # ... however long a loaded machine counts
    world.configure("bounces", bounce_brake_min_attempts=5, bounce_brake_rate=0.2)
    # Half the list is gone, well past the 20% brake in whatever order the rows are claimed
    # (PostgreSQL's claim order is not the id order). The 150 good ones take 15 s at least
    # (2 sessions, 0.2 s a reply): far longer than a check needs even on a loaded machine.
    world.configure("limits.default", connections=2)
    people = [f"q{i:03d}@a.test" for i in range(300)]
    gone = {p: "550 5.1.1 no such user" for p in people[:150]}
    world.mx("a.test", (10, "127.0.0.2"), script=Script(rcpt_replies=gone, delay=0.2))
    world.subscribers(people)
    cid = world.campaign()
    world.send(cid)
    state, reason = campaign(world, cid)
    assert state == "paused"
    assert reason.startswith("paused: hard-bounce rate ")
    assert "([bounces] bounce_brake_rate): the list looks stale" in reason
    delivered = len(world.received())
    assert 0 < delivered < 150  # stopped mid-send: not every good address got it
    counts = dict(
        world.sql(
            "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = :c GROUP BY state", c=cid
        )
    )
    assert counts.get("queued", 0) > 0  # left for a resume
    assert counts["sent"] == delivered and sum(counts.values()) == 300


def test_a_dsn_judged_by_its_whole_report_reads_the_same_in_events_report_and_brakes(
    world: World, tmp_path: Path
) -> None:
    """A bare "User unknown" refused after DATA is a filter (not suppressed). Its recorded
    text carries that judgement, so the report's class and the brake's hard-bounce count,
    which classify the recorded text again, agree with the bounce run."""
    world.configure("bounces", bounce_brake_min_attempts=5, bounce_brake_rate=0.2)
    cid = run_until_retry(world, {LATE: "451 4.3.0 try later"})
    got = {m.rcpt_tos[0]: m for m in world.received()}
    after_data = "550 User unknown (in reply to end of DATA command)"
    for i, person in enumerate(PEOPLE[:3]):
        imported(world, tmp_path, f"f{i}.eml", dsn(got[person], "5.0.0", after_data))
    assert world.sql("SELECT COUNT(*) FROM suppressions")[0][0] == 0
    texts = world.sql("SELECT text FROM events WHERE kind = 'bounced' AND campaign_id = :c", c=cid)
    assert [t for (t,) in texts] == [
        f"550 5.0.0 {after_data[4:]} (judged policy by the bounce report)"
    ] * 3
    assert campaign(world, cid)[0] == "running"  # 3 of 10 "bounced", none of them hard
    report = json.loads(cli(world, "campaigns", "report", str(cid), "--json"))
    assert report["bounce_categories"] == {"policy": 3}
    assert report["list_health"]["hard_bounces"] == 0
    # The same words refused at RCPT TO: a bad address, suppressed, and a hard bounce.
    at_rcpt = "550 User unknown (in reply to RCPT TO command)"
    imported(world, tmp_path, "r.eml", dsn(got[PEOPLE[3]], "5.0.0", at_rcpt))
    assert world.sql("SELECT COUNT(*) FROM suppressions")[0][0] == 1
    report = json.loads(cli(world, "campaigns", "report", str(cid), "--json"))
    assert report["list_health"]["hard_bounces"] == 1


def test_a_bare_user_unknown_after_the_dot_at_smtp_time_is_no_hard_bounce(world: World) -> None:
    """A filter answering the end of DATA with "550 User unknown" (mobile carriers do, for a
    blocked sender): bounced, not suppressed, and no stale list for the brake."""
    world.configure("bounces", bounce_brake_min_attempts=5, bounce_brake_rate=0.2)
    world.mx("a.test", (10, "127.0.0.2"), script=Script(data_reply="550 User unknown"))
    world.subscribers(PEOPLE)
    cid = world.campaign()
    world.send(cid)
    assert campaign(world, cid)[0] == "finished"
    assert world.sql("SELECT COUNT(*) FROM suppressions")[0][0] == 0
    texts = world.sql("SELECT DISTINCT text FROM events WHERE kind = 'bounced'")
    assert texts == [("User unknown (judged policy as refused after DATA)",)]
    report = json.loads(cli(world, "campaigns", "report", str(cid), "--json"))
    assert report["bounce_categories"] == {"policy": 10}
    assert report["list_health"]["hard_bounces"] == 0
