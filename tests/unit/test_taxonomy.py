"""The bounce taxonomy (issue 13 §3): one set of rules for SMTP-time replies and DSNs; only
recipient-fault classes suppress."""

from __future__ import annotations

import pytest

from bulkmail.delivery.classify import Disposition, classify_reply, parse_reply, reply_from_dsn
from bulkmail.delivery.taxonomy import ADDS_UP, SUPPRESSING, BounceClass, classify


def test_only_the_recipient_fault_classes_suppress() -> None:
    assert SUPPRESSING == {BounceClass.INVALID_RECIPIENT, BounceClass.BAD_DOMAIN}
    assert ADDS_UP == {BounceClass.INACTIVE_MAILBOX, BounceClass.QUOTA}


@pytest.mark.parametrize(
    "code, line, named",
    [
        (550, "5.1.1 <x@y>: User unknown", BounceClass.INVALID_RECIPIENT),
        (550, "5.1.2 Domain not found", BounceClass.BAD_DOMAIN),
        (550, "5.4.4 Host or domain name not found", BounceClass.BAD_DOMAIN),
        (554, "5.4.4 Unable to route", BounceClass.ROUTING),
        (553, "http://www.spamhaus.org/query/bl?ip=192.0.2.1", BounceClass.SPAM_BLOCK),
        (550, "5.1.1 IP address blacklisted", BounceClass.SPAM_BLOCK),
        (550, "5.7.1 Daily sending limit exceeded", BounceClass.TRANSIENT),
        (552, "5.1.1 mailbox is over quota (#5.1.1)", BounceClass.QUOTA),
        (
            550,
            "5.2.1 The email account that you tried to reach is inactive",
            BounceClass.INACTIVE_MAILBOX,
        ),
        (550, "5.2.0 User unknown", BounceClass.UNCATEGORISED),  # X.2.x: the address exists
        (554, "5.3.0 Recipient address rejected: Mailer error", BounceClass.UNCATEGORISED),
        (550, "User some.name not listed in Domino Directory", BounceClass.INVALID_RECIPIENT),
        (550, "The recipient name is not recognized", BounceClass.INVALID_RECIPIENT),
        (550, "User not found", BounceClass.INVALID_RECIPIENT),
        (550, "no such domain", BounceClass.BAD_DOMAIN),
        (554, "5.7.1 Relaying denied", BounceClass.RELAYING),
        (554, "5.7.1 Message rejected as spam", BounceClass.SPAM_CONTENT),
        (554, "5.7.0 Virus found in attachment", BounceClass.VIRUS),
        (552, "5.3.4 Message too big", BounceClass.CONTENT),
        (550, "5.4.7 Delivery time expired", BounceClass.EXPIRED),
        (500, "5.5.2 Syntax error", BounceClass.PROTOCOL),
        (451, "4.7.1 Greylisted", BounceClass.POLICY),
        (452, "4.2.2 Mailbox full", BounceClass.QUOTA),
        (421, "4.4.2 Connection dropped", BounceClass.ROUTING),
        (550, "5.1.1 Refused due to recipient preferences", BounceClass.POLICY),
    ],
)
def test_classes(code: int, line: str, named: BounceClass) -> None:
    verdict = classify_reply(parse_reply(code, line))
    assert verdict.bounce_class is named
    assert (verdict.disposition is Disposition.BOUNCED and verdict.suppress) == (
        named in SUPPRESSING
    )


def test_the_diagnostic_code_beats_a_generic_or_wrong_status() -> None:
    reply = reply_from_dsn("5.1.1", "smtp; 550 5.7.1 IP address blacklisted by recipient")
    assert reply.enhanced == "5.7.1"
    assert classify_reply(reply).suppress is False


def test_x_2_1_in_a_dsn_is_a_bad_address_only_when_refused_at_rcpt() -> None:
    reply = reply_from_dsn("5.2.1", "smtp; 550 5.2.1 <x@y>... User Unknown")
    assert classify_reply(reply, refused_at_rcpt=True).bounce_class is BounceClass.INVALID_RECIPIENT
    assert classify_reply(reply, refused_at_rcpt=False).bounce_class is BounceClass.INACTIVE_MAILBOX
    assert classify_reply(reply).suppress  # at SMTP time it answered RCPT TO itself


def test_classify_without_any_code_is_uncategorised() -> None:
    assert classify(0, None, "") is BounceClass.UNCATEGORISED
