"""Which SMTP command a bounce's refusal answered (``bulkmail.bounces.stage``), and what the
taxonomy makes of a bare "User unknown" depending on it."""

from __future__ import annotations

import pytest

from bulkmail.bounces.stage import DATA, MAIL, RCPT, refusal_stages, refused_at_rcpt
from bulkmail.delivery.taxonomy import BounceClass, classify, curable_cause


@pytest.mark.parametrize(
    "text, stages",
    [
        ("550 5.1.1 <x@y>: User unknown (in reply to RCPT TO command)", {RCPT}),
        ("550 5.7.1 spam (in reply to end of DATA command)", {DATA}),
        ("SMTP error from remote mail server after end of data:\n 550 : User unknown", {DATA}),
        ("SMTP error from remote mail server after RCPT TO:<x@y>:\n 550 no", {RCPT}),
        ("SMTP error from remote mail server after MAIL FROM:<a@b>:\n 553 no", {MAIL}),
        ("SMTP:RCPT host 192.0.2.8: 553 5.3.0 <x@y>... No such user here", {RCPT}),
        (">>> DATA\n<<< 550 5.0.0 <x@y>... User unknown\n<<< 503 5.0.0 Need RCPT", {DATA}),
        (">>> DATA\n<<< 550 no\n>>> RCPT To:<x@y>\n<<< 550 No such user here.", {DATA, RCPT}),
        ("Reason: Remote SMTP server has rejected address", {RCPT}),
        ("550 <x@y>: User unknown", set()),
    ],
)
def test_refusal_stages(text: str, stages: set[str]) -> None:
    assert refusal_stages(text) == stages


def test_a_bare_rcpt_mention_counts_but_not_sendmails_need_rcpt() -> None:
    assert refused_at_rcpt("550 User unknown while talking at RCPT") is True
    assert refused_at_rcpt("550 User unknown\n503 5.0.0 Need RCPT (recipient)") is False
    assert refused_at_rcpt("550 <x@y>: User unknown") is False


@pytest.mark.parametrize(
    "code, enhanced, text, at_rcpt, expected",
    [
        # A bare "User unknown", no code: hard at RCPT TO (or at SMTP time), a filter later.
        (550, "5.0.0", "user unknown", True, BounceClass.INVALID_RECIPIENT),
        (550, "5.0.0", "user unknown", None, BounceClass.INVALID_RECIPIENT),
        (550, "5.0.0", "user unknown", False, BounceClass.POLICY),
        (550, None, "<x@y>... user not exist", False, BounceClass.POLICY),
        # A specific code, or other words that say the address is bad, still decide.
        (550, "5.1.1", "user unknown", False, BounceClass.INVALID_RECIPIENT),
        (
            550,
            "5.0.0",
            "the recipient name is not recognized",
            False,
            BounceClass.INVALID_RECIPIENT,
        ),
        (550, "5.0.0", "user unknown: no such mailbox", False, BounceClass.INVALID_RECIPIENT),
        # X.3.x says the mail system, not the address, unless RCPT TO refused a missing user.
        (553, "5.3.0", "<x@y>... no such user here", True, BounceClass.INVALID_RECIPIENT),
        (553, "5.3.0", "<x@y>... no such user here", None, BounceClass.UNCATEGORISED),
        (554, "5.3.0", "recipient address rejected: mailer error", True, BounceClass.UNCATEGORISED),
    ],
)
def test_unknown_user_words_depend_on_the_stage(
    code: int, enhanced: str | None, text: str, at_rcpt: bool | None, expected: BounceClass
) -> None:
    assert classify(code, enhanced, text, at_rcpt) is expected


def test_curable_causes_named_in_words() -> None:
    assert curable_cause("Your message was rejected: Not enough disk space") == "quota"
    assert curable_cause("The user(s) account is disabled.") == "inactive_mailbox"
    assert curable_cause("550 user unknown") == ""


def test_a_recorded_judgement_is_read_back_as_that_class() -> None:
    from bulkmail.delivery.taxonomy import judged_note

    text = "user unknown" + judged_note(BounceClass.POLICY)
    assert classify(550, "5.0.0", text) is BounceClass.POLICY
    assert classify(550, "5.0.0", "user unknown") is BounceClass.INVALID_RECIPIENT
    # Only at the end, and only a class name: a reply quoting the words changes nothing.
    quoted = "user unknown (judged uncategorised by the bounce report) really"
    assert classify(550, "5.0.0", quoted) is BounceClass.INVALID_RECIPIENT
    assert classify(550, "5.1.1", "x (judged nothing by the bounce report)") is (
        BounceClass.INVALID_RECIPIENT
    )


@pytest.mark.parametrize(
    "stage, suppress, klass",
    [
        ("rcpt", True, "invalid_recipient"),
        (None, True, "invalid_recipient"),
        ("dot", False, "policy"),
    ],
)
def test_smtp_time_a_bare_user_unknown_after_data_is_a_filter(
    stage: str | None, suppress: bool, klass: str
) -> None:
    from bulkmail.db.queries import Claimed
    from bulkmail.delivery.classify import Reply, classify_reply
    from bulkmail.delivery.disposition import RetryPolicy, decide

    row = Claimed(1, 1, 1, "a@b.test", "b.test", 1, 0.0, "", {})
    got = decide(
        row,
        Reply(550, "User unknown"),
        mx_host="mx",
        tls=None,
        now=0.0,
        policy=RetryPolicy((60.0,), 3600.0),
        stage=stage,
    )
    assert (got.state, got.suppress) == ("bounced", suppress)
    # What is recorded reads back as the same class (the report, the brakes re-classify it).
    assert classify_reply(Reply(550, got.text, None)).bounce_class.value == klass


def test_smtp_time_no_such_user_under_x_3_0_at_rcpt_is_a_bad_address() -> None:
    from bulkmail.db.queries import Claimed
    from bulkmail.delivery.classify import Reply, classify_reply
    from bulkmail.delivery.disposition import RetryPolicy, decide

    row = Claimed(1, 1, 1, "a@b.test", "b.test", 1, 0.0, "", {})
    reply = Reply(553, "<a@b.test>... No such user here", "5.3.0")
    policy = RetryPolicy((60.0,), 3600.0)
    got = decide(row, reply, mx_host="mx", tls=None, now=0.0, policy=policy, stage="rcpt")
    assert (got.state, got.suppress) == ("bounced", True)
    assert got.text.endswith("(judged invalid_recipient as refused at RCPT TO)")
    again = classify_reply(Reply(553, got.text, "5.3.0")).bounce_class
    assert again.value == "invalid_recipient"
    unknown = decide(row, reply, mx_host="mx", tls=None, now=0.0, policy=policy)
    assert (unknown.suppress, unknown.text) == (False, reply.text)
