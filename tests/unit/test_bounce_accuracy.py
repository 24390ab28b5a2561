"""The classifier against a real-world corpus, judged by a reference analyser (issue 13 §4).

``scripts/bounce_accuracy.py`` measures; these tests hold the figures. Targets met are held
at the target; agreement (95%) and wrongly suppressed (2%) are held at what is reached, so
they can only get better. Where bulkmail deliberately differs from the
reference, a test below says why.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bulkmail.bounces.analyse import analyse

ROOT = Path(__file__).resolve().parent.parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "bounces-real"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "bounce_accuracy", ROOT / "scripts" / "bounce_accuracy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    return _script().measure(CORPUS)["figures"]


def test_the_corpus_copy_keeps_its_licence_and_every_expected_file() -> None:
    assert "BSD 2-CLAUSE" in (CORPUS / "LICENSE").read_text()
    assert len(list((CORPUS / "mail").glob("*.eml"))) == 295


def test_targets_met_stay_met(figures: dict[str, float]) -> None:
    assert figures["recipient_found"] >= 0.974  # 96.8% before the lone-recipient fallback
    assert figures["complaints_autoreplies"] >= 0.90
    assert figures["non_bounces_as_bounces"] == 0


def test_agreement_and_wrong_suppressions_meet_the_targets_and_hold_what_is_reached(
    figures: dict[str, float],
) -> None:
    # Before issue 13: agreement 82.9%, wrongly suppressed 9.9%; then 94.0% and 6.1%; now
    # 97.1% and 1.4% (targets: 95%, 2%). Held at what is reached, so they only get better.
    assert figures["agreement"] >= 0.971
    assert figures["wrongly_suppressed"] <= 0.0141


def one(name: str) -> tuple[str, list[tuple[str, str, str, bool]]]:
    a = analyse((CORPUS / "mail" / name).read_bytes(), name)
    return a.kind, [(r.address, r.status, r.category, r.hard) for r in a.recipients]


@pytest.mark.parametrize(
    "name, kind, recipient",
    [
        # The Diagnostic-Code's own code beats a generic or wrong Status (Status: 5.1.1).
        (
            "lhost-sendmail-33.eml",
            "bounce",
            ("mailboxfull@neko.example.org", "5.7.1", "spam_block", False),
        ),
        # 5.4.4 "couldn't find a mail exchanger": a bad domain, suppressed.
        ("lhost-qmail-11.eml", "bounce", ("neko@nyaan.jp", "5.4.4", "bad_domain", True)),
        # A blocklist URL never suppresses, whatever the code (553, Status 5.1.3).
        ("rhost-godaddy-02.eml", "bounce", ("kijitora@example.com", "5.1.3", "spam_block", False)),
        # Auto-Submitted on a Google Groups DSN does not make it an auto-reply.
        (
            "lhost-googlegroups-02.eml",
            "bounce",
            ("libsisimai@googlegroups.com", "5.0.0", "uncategorised", False),
        ),
        # From: MAILER-DAEMON <>; "error delivering your mail to <x>" (DragonFly).
        (
            "lhost-dragonfly-09.eml",
            "bounce",
            ("filtered@libsisimai.net", "5.2.1", "invalid_recipient", True),
        ),
        # A broken MIME boundary: the delivery-status fields are read from the text.
        (
            "rhost-google-02.eml",
            "bounce",
            ("neko-nyaan@example.org", "5.1.1", "invalid_recipient", True),
        ),
        # "addr: Domain does not exist" (OpenSMTPD), from a daemon with a null return path.
        (
            "lhost-opensmtpd-03.eml",
            "bounce",
            ("kijitora@neko.example.jp", "5.0.0", "bad_domain", True),
        ),
        # "The recipient name is not recognized" on the line after the address (Exchange 2003).
        (
            "lhost-exchange2003-02.eml",
            "bounce",
            ("kijitora@example.co.jp", "5.0.0", "invalid_recipient", True),
        ),
        # "550 User not found"; a post_master@ sender is a daemon (Verizon).
        (
            "lhost-postfix-76.eml",
            "bounce",
            ("this-local-part-does-not-exist@rakumail.jp", "5.0.0", "invalid_recipient", True),
        ),
        (
            "lhost-verizon-02.eml",
            "bounce",
            ("may-be-straycat-nyaaaaaan@vtext.com", "5.0.0", "invalid_recipient", True),
        ),
        # A bare "User unknown" with no code, not at RCPT TO: a filter after DATA (Exim's
        # "after end of data"; a Sendmail transcript's ">>> DATA"; no stage said at all).
        (
            "lhost-mailru-07.eml",
            "bounce",
            ("otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp", "5.0.0", "policy", False),
        ),
        (
            "lhost-sendmail-27.eml",
            "bounce",
            ("this-local-part-does-not-exist-on-the-system@mineo.jp", "5.0.0", "policy", False),
        ),
        ("rfc3464-35.eml", "bounce", ("mikeneko@neko.example.or.jp", "5.0.0", "policy", False)),
        # The same words with "Remote SMTP server has rejected address": at RCPT TO, hard.
        (
            "lhost-messagingserver-09.eml",
            "bounce",
            ("otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp", "5.0.0", "invalid_recipient", True),
        ),
        # A transcript with several sessions: the one refused at ">>> RCPT To:" is hard.
        (
            "lhost-v5sendmail-05.eml",
            "bounce",
            ("mikeneko@example.co.jp", "5.0.0", "invalid_recipient", True),
        ),
        # The report's own words name a curable cause over "User unknown": not suppressed,
        # counted towards the soft-bounce escalation ("Not enough disk space"; "The user(s)
        # account is disabled" over "550 user unknown (in reply to RCPT TO command)").
        ("rfc3464-01.eml", "bounce", ("userunknown@bouncehammer.jp", "5.1.1", "quota", False)),
        (
            "lhost-ezweb-02.eml",
            "bounce",
            (
                "this-local-part-does-not-exist-on-the-server@ezweb.ne.jp",
                "5.0.0",
                "inactive_mailbox",
                False,
            ),
        ),
        # ... unless the diagnostic says it itself: "550 5.1.1 <x>: inactive email address".
        (
            "rhost-apple-04.eml",
            "bounce",
            ("pseudo-local-part-of-icloud@icloud.com", "5.1.1", "invalid_recipient", True),
        ),
        # "SMTP:RCPT host ...: 553 5.3.0 <x>... No such user here": X.3.x, but the words name
        # a missing mailbox at RCPT TO: the address check refused it.
        ("lhost-x3-01.eml", "bounce", ("kijitora@example.com", "5.3.0", "invalid_recipient", True)),
        # ... but Postfix's "Recipient address rejected: Mailer error" under 5.3.0 is not.
        (
            "lhost-dragonfly-13.eml",
            "bounce",
            ("mailererror@libsisimai.net", "5.3.0", "uncategorised", False),
        ),
        # "Final-Recipient: RFC822; @mx.example.org": the one address the text names instead.
        ("lhost-sendmail-15.eml", "bounce", ("kijitora@example.org", "5.1.2", "bad_domain", True)),
        # x-unix: a local delivery program failed (procmail), not the address check.
        (
            "lhost-postfix-01.eml",
            "bounce",
            ("r@p351355.pool.example.ne.jp", "5.1.1", "uncategorised", False),
        ),
        # Amazon SES notifications in SNS JSON: a complaint, a delivery.
        (
            "lhost-amazonses-11.eml",
            "complaint",
            ("complaint@simulator.amazonses.com", "", "complaint", False),
        ),
        (
            "lhost-amazonses-12.eml",
            "unknown",
            ("success@simulator.amazonses.com", "2.6.0", "delivered", False),
        ),
    ],
)
def test_known_patterns(name: str, kind: str, recipient: tuple[str, str, str, bool]) -> None:
    got_kind, recipients = one(name)
    assert got_kind == kind
    assert recipient in recipients


def test_deliberate_difference_450_4_1_1_is_temporary_by_its_code() -> None:
    """The reference calls this hard; a 4xx is a deferral by RFC 5321 and is retried."""
    _kind, [(_address, status, _category, hard)] = one("lhost-postfix-05.eml")
    assert (status, hard) == ("4.1.1", False)


def test_deliberate_difference_policy_words_beat_unknown_user_words() -> None:
    """553 "Invalid recipient" under Status 5.7.1: the reference says unknown user; a wrong
    suppression loses a subscriber for good, so a policy code is never a bad address."""
    _kind, recipients = one("lhost-bigfoot-02.eml")
    assert recipients[0][2:] == ("policy", False)


def test_deliberate_difference_a_blocklist_under_5_1_0_is_not_an_unknown_user() -> None:
    """The reference calls "550 5.1.0 MailFrom domain is listed in Spamhaus" an unknown user;
    the words name a blocklist of *our* domain, which never suppresses a subscriber."""
    _kind, recipients = one("lhost-postfix-80.eml")
    assert recipients[0][2:] == ("spam_block", False)


def test_deliberate_difference_a_relayed_bare_user_unknown_is_a_filter() -> None:
    """Google relays ezweb's "550 <x>: User unknown" without saying at which command; the
    reference calls it an unknown user (from Google's own words), but the same reply from
    ezweb after DATA is its filter (lhost-mailru-07, lhost-messagingserver-08). Unproven at
    RCPT TO, a bare "User unknown" does not suppress: a wrong suppression loses a subscriber
    for good, a missed one costs a bounce per send until the soft-bounce count or a
    proven refusal comes."""
    _kind, recipients = one("rhost-gsuite-09.eml")
    assert recipients[0][2:] == ("policy", False)


@pytest.mark.parametrize(
    "name, note",
    [
        (
            "lhost-mailru-07.eml",
            "otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp: invalid_recipient read as policy: "
            "not shown refused at RCPT TO (a filter's answer after DATA)",
        ),
        (
            "rfc3464-01.eml",
            "userunknown@bouncehammer.jp: invalid_recipient read as quota: the report's own "
            "words name quota",
        ),
        (
            "lhost-x3-01.eml",
            "kijitora@example.com: uncategorised read as invalid_recipient: refused at RCPT TO",
        ),
    ],
)
def test_parse_says_why_the_report_changed_what_its_reply_alone_says(name: str, note: str) -> None:
    assert note in analyse((CORPUS / "mail" / name).read_bytes(), name).notes


def test_parse_adds_no_note_when_the_reply_alone_decides() -> None:
    notes = analyse((CORPUS / "mail" / "lhost-postfix-02.eml").read_bytes()).notes
    assert not any(" read as " in n for n in notes)
