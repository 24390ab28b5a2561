"""Safe sending through ``campaigns send``: ``--test-to`` (one signed copy to a real aiosmtpd
peer, no delivery row), ``--dry-run`` (counts per domain and site, nothing sent) and the
confirmation asked on a terminal before a large send, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import json

import dkim
import pytest
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from bulkmail.peers.smtp import Script
from tests.integration.world import World


def bulkmail(world: World, *args: str, input: str | None = None) -> Result:
    argv = ["--config", str(world.config_path()), *args]
    return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)


def dnsfunc_for(world: World):  # type: ignore[no-untyped-def]
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port = ["127.0.0.1"], world.dns.port
        answer = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    return dnsfunc


def counts(world: World) -> tuple[int, int]:
    deliveries = world.sql("SELECT COUNT(*) FROM deliveries")[0][0]
    events = world.sql("SELECT COUNT(*) FROM events")[0][0]
    return deliveries, events


def test_test_to_sends_one_signed_marked_copy_and_records_nothing(world: World) -> None:
    world.mx("dest.test", (10, "127.0.0.2"))
    world.mx("qa.test", (10, "127.0.0.3"))
    world.subscribers(["ann@dest.test", "bob@dest.test"])
    cid = world.campaign()
    out = bulkmail(
        world,
        "campaigns",
        "send",
        str(cid),
        "--test-to",
        "me@qa.test",
        "--as",
        "BOB@dest.test",
        "--json",
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["rendered_as"] == "bob@dest.test"
    assert world.servers["127.0.0.2"].messages == []  # no subscriber got anything
    [copy] = world.servers["127.0.0.3"].messages
    assert copy.rcpt_tos == ["me@qa.test"]
    msg = email.message_from_bytes(copy.data, policy=email.policy.default)
    assert msg["Subject"] == "[TEST] Hello Person 1"  # rendered as Bob (Person 1)
    assert msg["To"] == "Person 1 <me@qa.test>"
    assert copy.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(copy.data, dnsfunc=dnsfunc_for(world))
    assert counts(world) == (0, 0)
    status = json.loads(bulkmail(world, "campaigns", "status", str(cid), "--json").stdout)
    assert (status["state"], status["total"]) == ("draft", 0)


def test_test_to_renders_as_the_first_member_by_default(world: World) -> None:
    world.mx("dest.test", (10, "127.0.0.2"))
    world.subscribers(["ann@dest.test", "bob@dest.test"])
    cid = world.campaign()
    out = bulkmail(world, "campaigns", "send", str(cid), "--test-to", "qa@dest.test")
    assert out.exit_code == 0, out.output
    assert "rendered as ann@dest.test" in out.stdout and "(signed)" in out.stdout
    [copy] = world.servers["127.0.0.2"].messages
    assert b"Subject: [TEST] Hello Person 0" in copy.data


def test_test_to_is_refused_unsigned_and_a_refusal_is_one_line(world: World) -> None:
    world.mx(
        "dest.test",
        (10, "127.0.0.2"),
        script=Script(rcpt_replies={"qa@dest.test": "550 5.1.1 no such user"}),
    )
    world.subscribers(["ann@dest.test"])
    cid = world.campaign()
    refused = bulkmail(world, "campaigns", "send", str(cid), "--test-to", "qa@dest.test")
    assert refused.exit_code != 0
    assert refused.stderr.count("\n") == 1 and "refused it at rcpt" in refused.stderr
    world.configure("dkim", key_file="")
    unsigned = bulkmail(world, "campaigns", "send", str(cid), "--test-to", "qa@dest.test")
    assert unsigned.exit_code == 2 and "unsigned" in unsigned.stderr
    assert counts(world) == (0, 0)


def test_dry_run_counts_per_domain_and_site_and_sends_nothing(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.mx("b.test", (10, "127.0.0.2"))  # the same MX host: one site
    world.mx("c.test", (10, "127.0.0.3"))
    world.subscribers(["1@a.test", "2@a.test", "3@b.test", "4@c.test", "5@c.test", "6@c.test"])
    bulkmail(world, "suppressions", "add", "4@C.TEST")
    world.sql(
        "UPDATE memberships SET status = 'unsubscribed' WHERE subscriber_id = "
        "(SELECT id FROM subscribers WHERE email = '5@c.test')"
    )
    cid = world.campaign()
    out = bulkmail(world, "campaigns", "send", str(cid), "--dry-run", "--json")
    assert out.exit_code == 0, out.output
    run = json.loads(out.stdout)
    assert (run["send"], run["suppressed"], run["unsubscribed"]) == (4, 1, 1)
    assert run["domains"] == {"a.test": 2, "b.test": 1, "c.test": 1}
    assert sorted(run["sites"].values()) == [1, 3]  # a.test and b.test share their MX
    text = bulkmail(world, "campaigns", "send", str(cid), "--dry-run").stdout
    assert "4 would be sent, 1 skipped as suppressed, 1 skipped as unsubscribed" in text
    assert world.received() == [] and counts(world) == (0, 0)
    world.send(cid)  # once enqueued, the dry run counts what is still pending, and the skips
    after = json.loads(bulkmail(world, "campaigns", "send", str(cid), "--dry-run", "--json").stdout)
    assert (after["enqueued"], after["send"], after["suppressed"]) == (True, 0, 1)


def test_a_large_send_asks_on_a_terminal_and_not_under_cron(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["1@a.test", "2@a.test", "3@a.test"])
    cid = world.campaign()
    monkeypatch.setattr("bulkmail.cli.confirm.on_terminal", lambda: True)
    declined = bulkmail(world, "campaigns", "send", str(cid), "--confirm-above", "2", input="n\n")
    assert declined.exit_code != 0 and "to 3 recipients?" in declined.stderr
    assert world.received() == [] and counts(world) == (0, 0)
    small = bulkmail(world, "campaigns", "send", str(cid), "--confirm-above", "3", input="")
    assert small.exit_code == 0, small.output  # 3 is not above 3: no question
    assert len(world.received()) == 3


def test_no_question_without_a_terminal(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["1@a.test", "2@a.test", "3@a.test"])
    cid = world.campaign()
    out = bulkmail(world, "campaigns", "send", str(cid), "--confirm-above", "1")
    assert out.exit_code == 0, out.output
    assert "?" not in out.stderr and len(world.received()) == 3
