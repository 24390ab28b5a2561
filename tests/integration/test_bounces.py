"""Bounce processing end to end: a campaign is really sent (world), the receivers' bounces,
complaints, unsubscribe requests and auto-replies for those very messages land in a real
Dovecot mailbox next to ordinary mail, and ``bounces fetch`` / ``bounces import`` turn them
into delivery states, events and suppressions — once, however often they run."""

from __future__ import annotations

import email
import json
import mailbox as mboxlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkmail.bounces import parse
from bulkmail.bounces.process import fetch_mailbox, import_files
from bulkmail.cli.main import cli
from bulkmail.peers.smtp import Received
from tests.integration.world import SENDING_DOMAIN, World
from tests.peers.dovecot import Dovecot

PASSWORD_ENV = "BULKMAIL_TEST_BOUNCE_PASSWORD"


# -- what receivers send back, built from the messages they really got ------------------------


def headers_of(msg: Received) -> str:
    return msg.data.split(b"\r\n\r\n", 1)[0].decode()


def dsn(
    msg: Received,
    status: str,
    diagnostic: str,
    action: str = "failed",
    to: str | None = None,
    recipients: list[str] | None = None,
    returned: str | None = None,
) -> bytes:
    """An RFC 3464 report from a receiving MTA, sent to the VERP envelope sender."""
    to = to or msg.mail_from
    returned = headers_of(msg) if returned is None else returned
    blocks = "".join(
        f"Final-Recipient: rfc822; {r}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        for r in (recipients or msg.rcpt_tos)
    )
    return (
        f"From: MAILER-DAEMON@mx.receiver.test (Mail Delivery System)\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender ({'/'.join(msg.rcpt_tos)})\r\n"
        f"Message-ID: <dsn-{abs(hash((msg.data, status, to)))}@mx.receiver.test>\r\n"
        f"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        f"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; "
        f"mx.receiver.test\r\n\r\n{blocks}"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--B--\r\n"
    ).encode()


def arf(msg: Received) -> bytes:
    """A feedback-loop complaint to our FBL address: only the returned X-header names us."""
    return (
        f"From: fbl@isp.test\r\nTo: fbl@{SENDING_DOMAIN}\r\nSubject: Complaint\r\n"
        f"Message-ID: <arf-{abs(hash(msg.data))}@isp.test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        f"--A\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        f"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"User-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n\r\n"
        f"--A\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers_of(msg)}\r\n--A--\r\n"
    ).encode()


def qmail_text(msg: Received, reply: str) -> bytes:
    """A QSBMF text bounce to a plain address, quoting the message without our X-header."""
    copy = "\r\n".join(
        line
        for line in headers_of(msg).split("\r\n")
        if not line.lower().startswith(("x-bulkmail", "list-unsubscribe", " <"))
    )
    return (
        f"From: MAILER-DAEMON@qmail.receiver.test\r\nTo: bounce@bounces.{SENDING_DOMAIN}"
        f"\r\nSubject: failure notice\r\n\r\nHi. This is the qmail-send program at "
        f"qmail.receiver.test.\r\nI'm afraid I wasn't able to deliver your message to the "
        f"following addresses.\r\nThis is a permanent error; I've given up.\r\n\r\n"
        f"<{msg.rcpt_tos[0]}>:\r\n{reply}\r\n\r\n--- Below this line is a copy of the "
        f"message.\r\n\r\n{copy}\r\n\r\nHello.\r\n"
    ).encode()


def autoreply(msg: Received) -> bytes:
    return (
        f"From: {msg.rcpt_tos[0]}\r\nTo: {msg.mail_from}\r\nSubject: Out of office\r\n"
        f"Auto-Submitted: auto-replied\r\nMessage-ID: <ooo-{msg.rcpt_tos[0]}>\r\n\r\n"
        f"I am away until Monday.\r\n"
    ).encode()


def unsubscribe_request(msg: Received) -> bytes:
    """What a mail client sends for the List-Unsubscribe mailto of the message."""
    header = email.message_from_bytes(msg.data)["List-Unsubscribe"]
    match = re.search(r"<mailto:([^?>]+)\?subject=([^>]+)>", " ".join(header.split()))
    assert match is not None, header
    return (
        f"From: {msg.rcpt_tos[0]}\r\nTo: {match[1]}\r\nSubject: {match[2]}\r\n"
        f"Message-ID: <unsub-{msg.rcpt_tos[0]}>\r\n\r\nThis message will unsubscribe you."
        f"\r\n"
    ).encode()


ORDINARY = (
    b"From: Eve <eve@example.com>\r\nTo: bounce@bounces.news.test\r\nSubject: "
    b"A question\r\nMessage-ID: <ordinary@example.com>\r\n\r\nWho do I ask about the "
    b"550 typos in the last issue?\r\n"
)


# -- the world ---------------------------------------------------------------------------------


def send(w: World, people: list[str]) -> tuple[int, dict[str, Received]]:
    w.mx("a.test", (10, "127.0.0.2"))
    w.subscribers(people)
    cid = w.campaign()
    w.send(cid)
    return cid, {m.rcpt_tos[0]: m for m in w.received()}


def use_mailbox(
    w: World, server: Dovecot, protocol: str, security: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = server.ports[
        {
            ("imap", "tls"): "imaps",
            ("imap", "starttls"): "imap",
            ("pop3", "tls"): "pop3s",
            ("pop3", "starttls"): "pop3",
        }[protocol, security]
    ]
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    w.configure(
        "bounces",
        protocol=protocol,
        host=server.host,
        port=port,
        security=security,
        username=server.user,
        password_env=PASSWORD_ENV,
        ca_file=str(server.ca_file),
        processed_folder="bulkmail-processed",
    )


def snapshot(w: World, cid: int) -> tuple[object, ...]:
    """Everything bounce processing may change."""
    return (
        sorted((d.email, d.state) for d in w.states(cid).values()),
        sorted(tuple(r) for r in w.sql("SELECT kind, email, dedupe_key FROM events")),
        sorted(tuple(r) for r in w.sql("SELECT email, source FROM suppressions")),
        sorted(
            tuple(r)
            for r in w.sql(
                "SELECT s.email, m.status FROM memberships m JOIN subscribers s "
                "ON s.id = m.subscriber_id"
            )
        ),
    )


def fetch_cli(w: World, *extra: str) -> dict:
    result = CliRunner().invoke(
        cli,
        ["--config", str(w.config_path()), "bounces", "fetch", "--json", *extra],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# -- the tests ---------------------------------------------------------------------------------


def test_fetch_over_imap_applies_each_report_once_and_leaves_other_mail(
    world: World, mailbox: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [
        "gone@a.test",
        "full@a.test",
        "slow@a.test",
        "angry@a.test",
        "leaver@a.test",
        "away@a.test",
        "policy@a.test",
        "quoted@a.test",
        "multi1@a.test",
        "multi2@a.test",
        "fine@a.test",
    ]
    cid, got = send(world, people)
    use_mailbox(world, mailbox, "imap", "tls", monkeypatch)
    forged = re.sub(r"\+\w+-\w+-", "+1-1-", got["fine@a.test"].mail_from)
    strange = "From: someone@else.test\r\nMessage-ID: <1.1.aaaaaaaaaaaaaaaa@news.test>"
    mailbox.deliver(
        [
            dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 <gone@a.test>: User unknown"),
            dsn(got["full@a.test"], "5.2.2", "552 5.2.2 Mailbox full"),
            dsn(got["slow@a.test"], "4.4.1", "451 4.4.1 Connection timed out", action="delayed"),
            arf(got["angry@a.test"]),
            unsubscribe_request(got["leaver@a.test"]),
            autoreply(got["away@a.test"]),
            dsn(got["policy@a.test"], "5.7.1", "554 5.7.1 blocked using zen.spamhaus.org"),
            qmail_text(got["quoted@a.test"], "Remote host said: 550 5.1.1 User unknown"),
            dsn(
                got["multi1@a.test"],
                "5.1.1",
                "550 5.1.1 no such user",
                to="bounce@x.test",
                recipients=["multi1@a.test", "multi2@a.test", "nobody@elsewhere.test"],
            ),
            dsn(
                got["fine@a.test"],
                "5.1.1",
                "550 5.1.1 unknown",
                to=forged,
                recipients=["stranger@else.test"],
                returned=strange,
            ),
            ORDINARY,
        ]
    )
    out = fetch_cli(world)
    assert out["counts"]["messages"] == 11
    assert (out["counts"]["processed"], out["counts"]["removed"]) == (8, 8)
    states = {e: d.state for e, d in world.states(cid).items()}
    assert states == {
        "gone@a.test": "bounced",
        "full@a.test": "sent",
        "slow@a.test": "sent",
        "angry@a.test": "complained",
        "leaver@a.test": "sent",
        "away@a.test": "sent",
        "policy@a.test": "bounced",
        "quoted@a.test": "bounced",
        "multi1@a.test": "bounced",
        "multi2@a.test": "sent",  # named in multi1's report, which proves only multi1
        "fine@a.test": "sent",
    }
    assert sorted(tuple(r) for r in world.sql("SELECT email, source FROM suppressions")) == [
        ("angry@a.test", "complaint"),
        ("gone@a.test", "bounce"),
        ("multi1@a.test", "bounce"),
        ("quoted@a.test", "bounce"),
    ]
    events = sorted(
        tuple(r)
        for r in world.sql(
            "SELECT kind, email, campaign_id FROM events WHERE kind NOT IN ('deferred', 'sent')"
        )
    )
    assert events == sorted(
        [
            ("bounced", "gone@a.test", cid),
            ("soft_bounce", "full@a.test", cid),
            ("delayed", "slow@a.test", cid),
            ("complained", "angry@a.test", cid),
            ("unsubscribed", "leaver@a.test", cid),
            ("bounced", "policy@a.test", cid),
            ("bounced", "quoted@a.test", cid),
            ("bounced", "multi1@a.test", cid),
            ("forged_report", None, None),  # fine@a.test's, with a forged token
        ]
    )
    assert (
        world.sql(
            "SELECT m.status FROM memberships m JOIN subscribers s ON s.id = "
            "m.subscriber_id WHERE s.email = 'leaver@a.test'"
        )[0][0]
        == "unsubscribed"
    )
    how = {e["email"]: e["matched_by"] for m in out["messages"] for e in m["effects"]}
    assert (
        how["gone@a.test"],
        how["angry@a.test"],
        how["quoted@a.test"],
        how["multi1@a.test"],
        how["leaver@a.test"],
    ) == ("verp", "header", "message-id", "header", "subject")
    assert "multi2@a.test" not in how
    multi = next(m for m in out["messages"] if "multi1" in m["subject"])
    assert multi["note"] == (
        "ignored (not the delivery the report proves): multi2@a.test, nobody@elsewhere.test"
    )
    [forged] = [m for m in out["messages"] if m["forged"]]
    assert "fine@a.test" in forged["subject"] and forged["note"].startswith("forged: VERP token")
    assert out["counts"]["forged"] == 1
    left = mailbox.folder()
    assert sorted(s for s, _f in left) == sorted(
        ["A question", "Out of office", "Undelivered Mail Returned to Sender (fine@a.test)"]
    )  # not ours: forged, unknown
    assert all("\\Seen" not in flags for _s, flags in left)
    assert len(mailbox.subjects("bulkmail-processed")) == 8

    before = snapshot(world, cid)
    again = fetch_cli(world)
    assert (again["counts"]["messages"], again["counts"]["processed"]) == (3, 0)
    assert snapshot(world, cid) == before


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_fetch_over_pop3_deletes_only_what_it_processed(
    world: World, mailbox: Dovecot, monkeypatch: pytest.MonkeyPatch, security: str
) -> None:
    cid, got = send(world, ["gone@a.test", "away@a.test"])
    use_mailbox(world, mailbox, "pop3", security, monkeypatch)
    mailbox.deliver(
        [
            dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 User unknown"),
            autoreply(got["away@a.test"]),
            ORDINARY,
        ]
    )
    report = fetch_mailbox(world.settings(), world.db())
    assert [(m.kind, m.processed, m.removed) for m in report.messages] == [
        ("bounce", True, True),
        ("autoreply", False, False),
        ("unknown", False, False),
    ]
    assert world.states(cid)["gone@a.test"].state == "bounced"
    assert mailbox.subjects() == ["A question", "Out of office"]
    before = snapshot(world, cid)
    assert fetch_mailbox(world.settings(), world.db()).counts()["processed"] == 0
    assert snapshot(world, cid) == before


def test_dry_run_says_what_it_would_do_and_changes_nothing(
    world: World, mailbox: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, got = send(world, ["gone@a.test"])
    use_mailbox(world, mailbox, "imap", "starttls", monkeypatch)
    mailbox.deliver([dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 User unknown")])
    before = snapshot(world, cid)
    out = fetch_cli(world, "--dry-run")
    assert out["dry_run"] is True
    [effect] = out["messages"][0]["effects"]
    assert (effect["event"], effect["state"], effect["suppressed"], effect["recorded"]) == (
        "bounced",
        "bounced",
        True,
        False,
    )
    assert snapshot(world, cid) == before
    assert len(mailbox.subjects()) == 1 and mailbox.subjects("bulkmail-processed") == []


def test_importing_files_and_an_mbox_twice_records_each_report_once(
    world: World, tmp_path: Path
) -> None:
    cid, got = send(world, ["gone@a.test", "angry@a.test", "late@a.test"])
    single = tmp_path / "gone.eml"
    single.write_bytes(dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 User unknown"))
    box = mboxlib.mbox(tmp_path / "saved.mbox")
    for data in (
        arf(got["angry@a.test"]),
        dsn(got["late@a.test"], "4.4.7", "Message delayed", action="delayed"),
        ORDINARY,
    ):
        box.add(data)
    box.close()
    first = import_files(world.settings(), world.db(), [single, tmp_path / "saved.mbox"])
    assert [(m.ref.rsplit("/", 1)[-1], m.kind, m.processed) for m in first.messages] == [
        ("gone.eml", "bounce", True),
        ("saved.mbox#1", "complaint", True),
        ("saved.mbox#2", "delayed", True),
        ("saved.mbox#3", "unknown", False),
    ]
    before = snapshot(world, cid)
    second = import_files(world.settings(), world.db(), [single, tmp_path / "saved.mbox"])
    assert snapshot(world, cid) == before
    assert [e.recorded for m in second.messages for e in m.effects] == [False, False, False]
    assert {e: d.state for e, d in world.states(cid).items()} == {
        "gone@a.test": "bounced",
        "angry@a.test": "complained",
        "late@a.test": "sent",
    }


def test_a_message_the_parser_chokes_on_is_reported_and_the_run_goes_on(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, got = send(world, ["gone@a.test"])
    real_parse = parse._parse

    def choking(msg: email.message.Message) -> parse.Report:
        if "BOOM" in str(msg.get("Subject", "")):
            raise ValueError("unexpected structure")
        return real_parse(msg)

    monkeypatch.setattr(parse, "_parse", choking)
    (tmp_path / "1.eml").write_bytes(b"From: MAILER-DAEMON@x.test\r\nSubject: BOOM\r\n\r\nx\r\n")
    (tmp_path / "2.eml").write_bytes(dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 unknown"))
    report = import_files(world.settings(), world.db(), [tmp_path / "1.eml", tmp_path / "2.eml"])
    assert [(m.kind, m.processed) for m in report.messages] == [
        ("unknown", False),
        ("bounce", True),
    ]
    assert "ValueError: unexpected structure" in report.messages[0].note
    assert world.states(cid)["gone@a.test"].state == "bounced"
