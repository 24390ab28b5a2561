"""Forged and unproven reports change nothing (issue 13 §1).

Anyone can mail the bounce address. Before the fix, a DSN to ``bounces+TOKEN@`` whose TOKEN
failed the HMAC check was matched by the address in ``Final-Recipient`` instead, so anyone
could unsubscribe anyone. Each variant here names a real subscriber who never bounced; none of
them may change a delivery, an event about a delivery, a suppression or a membership, whether
the report comes in by ``bounces import`` or from the Dovecot mailbox by ``bounces fetch``.
A report with one valid token affects only the delivery that token names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkmail.cli.main import cli
from bulkmail.peers.smtp import Received
from tests.integration.test_bounces import dsn, headers_of, send, use_mailbox
from tests.integration.world import SENDING_DOMAIN, World
from tests.peers.dovecot import Dovecot

VICTIM = "victim@a.test"
OTHER = "other@a.test"


def forge(token_text: str) -> str:
    """The same text with every bulkmail token's HMAC part changed (shape kept, proof lost)."""
    return re.sub(
        r"(\b[0-9a-z]{1,13}-[0-9a-z]{1,13}-)([a-z2-7]{16})",
        lambda m: m[1] + ("a" if m[2][0] != "a" else "b") + m[2][1:],
        token_text,
    )


def forge_message_ids(text: str) -> str:
    return re.sub(
        r"<([0-9a-z]{1,13})\.([0-9a-z]{1,13})\.([a-z2-7]{16})@",
        lambda m: f"<{m[1]}.{m[2]}.{'a' if m[3][0] != 'a' else 'b'}{m[3][1:]}@",
        text,
    )


def text_bounce(to: str, rcpt: str, quoted: str = "") -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.attacker.test\r\nTo: {to}\r\nSubject: failure notice\r\n"
        f"Message-ID: <{abs(hash((to, rcpt, quoted)))}@mx.attacker.test>\r\n\r\n"
        f"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        f"This is a permanent error; I've given up.\r\n\r\n<{rcpt}>:\r\n"
        f"550 5.1.1 User unknown\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n"
        f"{quoted}\r\n"
    ).encode()


def arf_with(original_headers: str, rcpt: str) -> bytes:
    return (
        f"From: fbl@isp.test\r\nTo: fbl@{SENDING_DOMAIN}\r\nSubject: Complaint\r\n"
        f"Message-ID: <arf-{abs(hash((original_headers, rcpt)))}@isp.test>\r\nMIME-Version: 1.0"
        f'\r\nContent-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        f"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"Version: 1\r\nOriginal-Rcpt-To: {rcpt}\r\n\r\n"
        f"--A\r\nContent-Type: text/rfc822-headers\r\n\r\n{original_headers}\r\n--A--\r\n"
    ).encode()


def variants(got: dict[str, Received]) -> dict[str, bytes]:
    victim = got[VICTIM]
    real = headers_of(victim)
    plain = f"bounce@bounces.{SENDING_DOMAIN}"
    return {
        "forged VERP, victim in Final-Recipient": dsn(
            victim, "5.1.1", "550 5.1.1 User unknown", to=forge(victim.mail_from), returned=""
        ),
        # A real returned copy does not rescue a forged envelope token: refused outright.
        "forged VERP with the real returned headers": dsn(
            victim, "5.2.1", "550 5.2.1 Mailbox disabled", to=forge(victim.mail_from), returned=real
        ),
        "no VERP, victim in Final-Recipient only": dsn(
            victim, "5.1.1", "550 5.1.1 User unknown", to=plain, returned="Subject: hi"
        ),
        "forged ARF X-Bulkmail-Delivery": arf_with(forge(real), VICTIM),
        "ARF naming the victim only": arf_with("Subject: hi\r\nTo: " + VICTIM, VICTIM),
        "plain-text bounce naming the victim": text_bounce(plain, VICTIM),
        "plain-text bounce with a forged Message-ID": text_bounce(
            plain, VICTIM, forge_message_ids(real)
        ),
    }


def protected(w: World, cid: int) -> tuple[object, ...]:
    """What no forged or unproven report may change."""
    return (
        sorted((d.email, d.state) for d in w.states(cid).values()),
        sorted(tuple(r) for r in w.sql("SELECT kind, email FROM events WHERE email IS NOT NULL")),
        sorted(tuple(r) for r in w.sql("SELECT email FROM suppressions")),
        sorted(
            tuple(r)
            for r in w.sql(
                "SELECT s.email, m.status FROM memberships m JOIN subscribers s "
                "ON s.id = m.subscriber_id"
            )
        ),
    )


def run_cli(w: World, *args: str) -> dict:
    result = CliRunner().invoke(
        cli, ["--config", str(w.config_path()), "bounces", *args, "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_forged_and_unproven_reports_imported_from_files_change_nothing(
    world: World, tmp_path: Path
) -> None:
    cid, got = send(world, [VICTIM, OTHER])
    before = protected(world, cid)
    files = []
    for n, data in enumerate(variants(got).values()):
        files.append(tmp_path / f"{n}.eml")
        files[-1].write_bytes(data)
    out = run_cli(world, "import", *map(str, files))
    assert protected(world, cid) == before
    assert out["counts"]["processed"] == 0
    forged = [m["forged"] for m in out["messages"]]
    assert forged == [True, True, False, True, False, False, True]
    assert world.sql("SELECT COUNT(*) FROM events WHERE kind = 'forged_report'")[0][0] == 4


def test_forged_and_unproven_reports_in_the_mailbox_change_nothing_and_stay(
    world: World, mailbox: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, got = send(world, [VICTIM, OTHER])
    use_mailbox(world, mailbox, "imap", "tls", monkeypatch)
    messages = variants(got)
    mailbox.deliver(list(messages.values()))
    before = protected(world, cid)
    out = run_cli(world, "fetch")
    assert protected(world, cid) == before
    assert (out["counts"]["processed"], out["counts"]["removed"]) == (0, 0)
    assert out["counts"]["forged"] == 4
    assert len(mailbox.subjects()) == len(messages)  # all left for a person
    assert mailbox.subjects("bulkmail-processed") == []


def test_a_report_with_one_valid_token_affects_only_the_delivery_it_names(
    world: World, tmp_path: Path
) -> None:
    cid, got = send(world, [VICTIM, OTHER])
    report = dsn(
        got[OTHER],
        "5.1.1",
        "550 5.1.1 User unknown",
        recipients=[OTHER, VICTIM, "stranger@else.test"],
    )
    (tmp_path / "multi.eml").write_bytes(report)
    out = run_cli(world, "import", str(tmp_path / "multi.eml"))
    [message] = out["messages"]
    assert [(e["email"], e["matched_by"]) for e in message["effects"]] == [(OTHER, "verp")]
    states = {e: d.state for e, d in world.states(cid).items()}
    assert states == {VICTIM: "sent", OTHER: "bounced"}
    [(email, reason)] = world.sql("SELECT email, reason FROM suppressions")
    assert email == OTHER
    assert reason.startswith("bounce: invalid_recipient: 550 5.1.1")  # the taxonomy's class


def test_a_forwarded_report_with_a_valid_token_is_about_the_tokens_delivery(
    world: World, tmp_path: Path
) -> None:
    """The only recipient has another address (forwarding): the token decides whose it is."""
    cid, got = send(world, [VICTIM, OTHER])
    report = dsn(got[OTHER], "5.1.1", "550 5.1.1 User unknown", recipients=["fwd@else.test"])
    (tmp_path / "fwd.eml").write_bytes(report)
    run_cli(world, "import", str(tmp_path / "fwd.eml"))
    assert {e: d.state for e, d in world.states(cid).items()} == {
        VICTIM: "sent",
        OTHER: "bounced",
    }
