"""``bulkmail bounces parse FILE... [--json]``: the classifier on its own (issue 13 §2).

No database and no configuration: the command runs in an empty directory with no bulkmail
settings in the environment. Mbox files and LF-only files work.
"""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkmail.cli.main import cli

DSN = (
    "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
    "To: bounces+1-2-aaaaaaaaaaaaaaaa@news.example\nSubject: Undelivered Mail\n"
    "Message-ID: <dsn-1@mx.example.net>\nMIME-Version: 1.0\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
    "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
    "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
    "Final-Recipient: rfc822; gone@example.net\nAction: failed\nStatus: 5.1.1\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: User unknown\n\n"
    "Final-Recipient: rfc822; listed@example.net\nAction: failed\nStatus: 5.7.1\n"
    "Diagnostic-Code: smtp; 554 5.7.1 blocked using zen.spamhaus.org\n\n"
    "--B--\n"
)
ARF = (
    "From: fbl@isp.example\nTo: fbl@news.example\nSubject: Complaint\nMIME-Version: 1.0\n"
    'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\n\n'
    "--A\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nVersion: 1\n"
    "Original-Rcpt-To: angry@example.org\n\n--A--\n"
)
VACATION = (
    "From: away@example.org\nTo: news@news.example\nSubject: Out of office\n"
    "Auto-Submitted: auto-replied\n\nI am away.\n"
)
DELAY = (
    "From: MAILER-DAEMON@mx.example.net\nTo: bounces@news.example\nSubject: Delayed Mail\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
    "--B\nContent-Type: message/delivery-status\n\n"
    "Final-Recipient: rfc822; slow@example.net\nAction: delayed\nStatus: 4.4.1\n"
    "Diagnostic-Code: smtp; 451 4.4.1 Connection timed out\n\n--B--\n"
)
ORDINARY = "From: eve@example.com\nTo: news@news.example\nSubject: A question\n\nHello.\n"


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no bulkmail settings anywhere."""
    for name in ("BULKMAIL_CONFIG", "BULKMAIL_DATABASE_URL", "BULKMAIL_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["bounces", "parse", *args])
    return result.exit_code, result.output


def test_json_contract_for_single_lf_files_and_an_mbox(nowhere: Path) -> None:
    (nowhere / "dsn.eml").write_text(DSN)  # LF line ends, as saved by most tools
    (nowhere / "crlf.eml").write_bytes(DELAY.replace("\n", "\r\n").encode())
    box = mailbox.mbox(nowhere / "saved.mbox")
    for text in (ARF, VACATION, ORDINARY):
        box.add(text.encode())
    box.close()
    code, out = run("dsn.eml", "crlf.eml", "saved.mbox", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert list(data) == ["messages"]
    messages = data["messages"]
    assert [(m["file"], m["kind"]) for m in messages] == [
        ("dsn.eml", "bounce"),
        ("crlf.eml", "delayed"),
        ("saved.mbox#1", "complaint"),
        ("saved.mbox#2", "autoreply"),
        ("saved.mbox#3", "unknown"),
    ]
    keys = {"address", "action", "status", "reply_code", "diagnostic", "category", "hard"}
    for m in messages:
        assert {"file", "kind", "recipients"} <= set(m)
        assert all(set(r) == keys for r in m["recipients"])
    gone, listed = messages[0]["recipients"]
    assert (gone["address"], gone["action"], gone["status"], gone["reply_code"]) == (
        "gone@example.net",
        "failed",
        "5.1.1",
        550,
    )
    assert gone["hard"] is True and gone["category"] == "invalid_recipient"
    assert "User unknown" in gone["diagnostic"]
    assert (listed["status"], listed["reply_code"], listed["hard"]) == ("5.7.1", 554, False)
    assert listed["category"] == "spam_block"
    [slow] = messages[1]["recipients"]
    assert (slow["action"], slow["status"], slow["hard"]) == ("delayed", "4.4.1", False)
    [angry] = messages[2]["recipients"]
    assert (angry["address"], angry["hard"]) == ("angry@example.org", False)
    [away] = messages[3]["recipients"]  # who replied, never a failure
    assert (away["address"], away["category"], away["hard"]) == (
        "away@example.org",
        "autoreply",
        False,
    )
    assert messages[4]["recipients"] == []


def test_text_form_says_why_and_escapes_what_strangers_wrote(nowhere: Path) -> None:
    hostile = DSN.replace("User unknown", "User unknown \x1b]0;owned\x07")
    (nowhere / "dsn.eml").write_text(hostile)
    code, out = run("dsn.eml")
    assert code == 0, out
    assert "dsn.eml: bounce" in out
    assert "gone@example.net: failed 5.1.1 550, invalid_recipient, HARD" in out
    assert "listed@example.net: failed 5.7.1 554, spam_block, not suppressed" in out
    assert "\x1b" not in out and "\\x1b]0;owned\\x07" in out


def test_a_missing_file_is_one_line_and_prints_nothing_else(nowhere: Path) -> None:
    (nowhere / "dsn.eml").write_text(DSN)
    result = CliRunner().invoke(cli, ["bounces", "parse", "dsn.eml", "missing.eml", "--json"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "bulkmail: error: missing.eml: cannot read: No such file or directory"
    ]
