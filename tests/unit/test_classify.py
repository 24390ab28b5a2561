"""classify_reply: what each SMTP reply means for a delivery (REFERENCE.md status-code table)."""

from __future__ import annotations

import pytest

from bulkmail.delivery.classify import (
    Category,
    Disposition,
    Reply,
    Verdict,
    bounce_is_hard,
    classify_reply,
    connection_failed,
    dns_temporary,
    message_too_big,
    no_such_domain,
    null_mx,
    parse_reply,
    reply_from_dsn,
    retry_hint,
    smtputf8_unsupported,
    tls_unavailable,
)


def verdict(code: int, message: str) -> Verdict:
    return classify_reply(parse_reply(code, message))


# -- parse_reply -----------------------------------------------------------------------------


def test_parse_reply_lifts_the_enhanced_code_off_the_text() -> None:
    reply = parse_reply(550, "5.1.1 <bob@example.test>: Recipient address rejected")
    assert reply == Reply(550, "<bob@example.test>: Recipient address rejected", "5.1.1")


def test_parse_reply_without_enhanced_code_keeps_the_text() -> None:
    assert parse_reply(550, "No such user here") == Reply(550, "No such user here", None)


def test_parse_reply_strips_the_repeated_code_from_every_line_of_a_multiline_reply() -> None:
    reply = parse_reply(550, "5.7.1 Message rejected\n5.7.1 See https://example.test/why")
    assert reply.enhanced == "5.7.1"
    assert reply.text == "Message rejected\nSee https://example.test/why"


@pytest.mark.parametrize("text", ["5.1.1.2 odd", "51.1 x", "3.1.1 nope", "5.1 short"])
def test_parse_reply_ignores_things_that_are_not_enhanced_codes(text: str) -> None:
    assert parse_reply(550, text).enhanced is None


def test_parse_reply_normalises_leading_zeros_in_the_enhanced_code() -> None:
    assert parse_reply(550, "5.01.001 x").enhanced == "5.1.1"


def test_reply_str_is_the_reply_line() -> None:
    assert str(Reply(550, "No such user", "5.1.1")) == "550 5.1.1 No such user"
    assert str(Reply(250, "OK")) == "250 OK"


# -- the status-code table -----------------------------------------------------------------


def test_2xx_is_sent() -> None:
    assert verdict(250, "2.0.0 Ok: queued as 4F2A") == Verdict(
        Category.DELIVERED, Disposition.SENT, False
    )


@pytest.mark.parametrize("enhanced", ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"])
def test_hard_codes_bounce_and_suppress(enhanced: str) -> None:
    v = verdict(550, f"{enhanced} nope")
    assert (v.category, v.disposition, v.suppress) == (Category.HARD, Disposition.BOUNCED, True)
    assert bounce_is_hard(v)


@pytest.mark.parametrize("line", ["5.2.2 Mailbox full", "5.2.3 Message too large for quota"])
def test_quota_codes_defer_even_as_5xx(line: str) -> None:
    v = verdict(552, line)
    assert (v.category, v.disposition, v.suppress) == (Category.QUOTA, Disposition.DEFERRED, False)


def test_quota_as_4xx_is_quota_and_deferred() -> None:
    v = verdict(452, "4.2.2 Mailbox full")
    assert (v.category, v.disposition) == (Category.QUOTA, Disposition.DEFERRED)


@pytest.mark.parametrize(
    "code, line",
    [
        (421, "4.4.2 Connection dropped"),
        (450, "4.4.7 Delivery time expired"),
        (451, "4.3.0 Local error"),
        (450, "try later"),
        (451, "4.4.5 System congestion"),
    ],
)
def test_any_4xx_is_soft_and_deferred(code: int, line: str) -> None:
    v = verdict(code, line)
    assert (v.category, v.disposition, v.suppress) == (Category.SOFT, Disposition.DEFERRED, False)


def test_greylisting_is_deferred_not_bounced() -> None:
    v = verdict(451, "4.7.1 Greylisted, try again")
    assert (v.category, v.disposition, v.suppress) == (Category.POLICY, Disposition.DEFERRED, False)


def test_x4x_as_5xx_is_soft_and_deferred() -> None:
    v = verdict(554, "5.4.4 Unable to route")
    assert (v.category, v.disposition) == (Category.SOFT, Disposition.DEFERRED)


def test_5_4_7_from_a_relay_is_expired() -> None:
    v = verdict(554, "5.4.7 Delivery time expired")
    assert (v.category, v.disposition, v.suppress) == (Category.EXPIRED, Disposition.EXPIRED, False)


@pytest.mark.parametrize("enhanced", ["5.7.1", "5.7.26", "5.7.0"])
def test_policy_blocks_bounce_without_suppressing(enhanced: str) -> None:
    v = verdict(550, f"{enhanced} Message rejected: user unknown? no, reputation")
    assert (v.category, v.disposition, v.suppress) == (Category.POLICY, Disposition.BOUNCED, False)
    assert not bounce_is_hard(v)


@pytest.mark.parametrize("enhanced", ["5.1.7", "5.1.8"])
def test_a_refused_sender_address_never_suppresses_the_recipient(enhanced: str) -> None:
    v = verdict(553, f"{enhanced} Sender address rejected")
    assert (v.category, v.suppress) == (Category.POLICY, False)


@pytest.mark.parametrize("line", ["5.6.0 Bad content", "5.6.7 Non-ASCII", "5.3.4 Message too big"])
def test_content_codes_bounce_without_suppressing(line: str) -> None:
    v = verdict(554, line)
    assert (v.category, v.disposition, v.suppress) == (Category.CONTENT, Disposition.BOUNCED, False)


def test_protocol_codes_bounce() -> None:
    v = verdict(501, "5.5.4 Syntax error in parameters")
    assert (v.category, v.disposition) == (Category.PROTOCOL, Disposition.BOUNCED)


@pytest.mark.parametrize(
    "code, line",
    [
        (452, "4.5.3 Too many recipients"),
        (452, "Too many recipients"),
        (552, "5.5.3 Too many recipients"),
        (552, "Too many recipients"),
    ],
)
def test_too_many_recipients_is_deferred_never_bounced(code: int, line: str) -> None:
    assert verdict(code, line).disposition is Disposition.DEFERRED


def test_the_basic_code_class_wins_when_the_enhanced_class_disagrees() -> None:
    assert verdict(450, "5.1.1 user unknown").disposition is Disposition.DEFERRED
    assert verdict(550, "4.1.1 user unknown").disposition is Disposition.BOUNCED


# -- 5xx without an enhanced code: text, then the basic code -----------------------------


@pytest.mark.parametrize(
    "text",
    [
        "User unknown",
        "No such user here",
        "mailbox does not exist",
        "Mailbox unavailable",
        "Invalid recipient <x@example.test>",
    ],
)
def test_unknown_user_texts_are_hard(text: str) -> None:
    v = verdict(550, text)
    assert (v.category, v.suppress) == (Category.HARD, True)


@pytest.mark.parametrize("text", ["Quota exceeded", "Mailbox full", "user is over quota"])
def test_quota_texts_defer(text: str) -> None:
    v = verdict(550, text)
    assert (v.category, v.disposition) == (Category.QUOTA, Disposition.DEFERRED)


@pytest.mark.parametrize(
    "text",
    [
        "Message rejected as spam",
        "Blocked by local policy",
        "Listed on a blacklist",
        "Poor sender reputation",
    ],
)
def test_policy_texts_bounce_without_suppressing(text: str) -> None:
    v = verdict(554, text)
    assert (v.category, v.disposition, v.suppress) == (Category.POLICY, Disposition.BOUNCED, False)


def test_policy_words_win_over_unknown_user_words() -> None:
    assert verdict(550, "Mailbox unavailable: blocked for spam").suppress is False


def test_a_plain_550_without_any_clue_is_a_hard_bounce() -> None:
    v = verdict(550, "Requested action not taken")
    assert (v.category, v.disposition, v.suppress) == (Category.HARD, Disposition.BOUNCED, True)


def test_an_unspecific_enhanced_code_without_a_clue_bounces_without_suppressing() -> None:
    v = verdict(550, "5.0.0 Rejected")
    assert (v.category, v.disposition, v.suppress) == (Category.UNKNOWN, Disposition.BOUNCED, False)


def test_an_unspecific_enhanced_code_lets_the_text_decide() -> None:
    assert verdict(550, "5.1.0 <x@example.test>: User unknown").category is Category.HARD


def test_a_reply_code_outside_2xx_4xx_5xx_is_unknown_and_deferred() -> None:
    v = classify_reply(Reply(354, "go ahead"))
    assert (v.category, v.disposition) == (Category.UNKNOWN, Disposition.DEFERRED)


# -- retry hints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("Greylisted, please try again in 300 seconds", 300.0),
        ("Try again in 5 minutes", 300.0),
        ("retry after 60", 60.0),
        ("retry in 2h", 7200.0),
        ("greylisted for 90s", 90.0),
        ("try again later", None),
        ("all fine", None),
    ],
)
def test_retry_hints_are_read_from_the_text(text: str, seconds: float | None) -> None:
    assert retry_hint(text) == seconds


def test_a_deferral_carries_the_servers_retry_hint() -> None:
    assert verdict(451, "4.7.1 Greylisted, try again in 5 minutes").retry_after == 300.0


def test_a_bounce_carries_no_retry_hint() -> None:
    assert verdict(550, "5.1.1 No such user, retry in 5 minutes will not help").retry_after is None


# -- failures that never reached a server --------------------------------------------------


@pytest.mark.parametrize(
    "reply, disposition, suppress",
    [
        (connection_failed("refused"), Disposition.DEFERRED, False),
        (dns_temporary("SERVFAIL"), Disposition.DEFERRED, False),
        (tls_unavailable(), Disposition.DEFERRED, False),
        (no_such_domain("gone.test"), Disposition.BOUNCED, True),
        (null_mx("nomail.test"), Disposition.BOUNCED, True),
        (smtputf8_unsupported(), Disposition.BOUNCED, False),
        (message_too_big(2_000_000, 1_000_000), Disposition.BOUNCED, False),
    ],
)
def test_synthetic_replies_classify_as_documented(
    reply: Reply, disposition: Disposition, suppress: bool
) -> None:
    v = classify_reply(reply)
    assert (v.disposition, v.suppress) == (disposition, suppress)


def test_null_mx_reply_is_556_5_1_10() -> None:
    assert (null_mx("x.test").code, null_mx("x.test").enhanced) == (556, "5.1.10")


# -- DSNs ------------------------------------------------------------------------------------


def test_reply_from_dsn_takes_the_code_from_an_smtp_diagnostic() -> None:
    reply = reply_from_dsn("5.1.1", "smtp; 550 5.1.1 <bob@example.test>: User unknown")
    assert reply == Reply(550, "<bob@example.test>: User unknown", "5.1.1")
    assert bounce_is_hard(classify_reply(reply))


def test_reply_from_dsn_without_diagnostic_derives_the_code_from_the_status_class() -> None:
    assert reply_from_dsn("5.1.1") == Reply(550, "", "5.1.1")
    assert reply_from_dsn("4.4.7").code == 450
    assert classify_reply(reply_from_dsn("4.2.2")).disposition is Disposition.DEFERRED


def test_reply_from_dsn_prefers_a_specific_diagnostic_code_over_an_x00_status() -> None:
    assert reply_from_dsn("5.0.0", "smtp; 550 5.7.1 blocked").enhanced == "5.7.1"


def test_reply_from_dsn_handles_non_smtp_diagnostics_and_junk_status() -> None:
    assert reply_from_dsn("5.4.4", "X-Postfix; Host or domain name not found") == Reply(
        550, "Host or domain name not found", "5.4.4"
    )
    junk = reply_from_dsn("garbage")
    assert classify_reply(junk).category is Category.UNKNOWN


def test_reply_from_dsn_keeps_the_status_class_when_the_diagnostic_disagrees() -> None:
    assert reply_from_dsn("5.1.1", "smtp; 450 try later").code == 550


# -- 5xx without an enhanced code: RFC 5321 (and 7504, 4954) meaning of the basic code -----------

#: code: (suppress?, disposition, what RFC 5321 / 7504 / 4954 says it is). Only "the address is
#: bad" suppresses; a full mailbox (552) defers like X.2.2; everything about the conversation,
#: authentication or an unspecific failure bounces without losing the subscriber.
BASIC_5XX = {
    500: (False, Disposition.BOUNCED, "syntax error, command unrecognised"),
    501: (False, Disposition.BOUNCED, "syntax error in parameters"),
    502: (False, Disposition.BOUNCED, "command not implemented"),
    503: (False, Disposition.BOUNCED, "bad sequence of commands"),
    504: (False, Disposition.BOUNCED, "command parameter not implemented"),
    521: (True, Disposition.BOUNCED, "host does not accept mail (RFC 7504)"),
    530: (False, Disposition.BOUNCED, "authentication required (RFC 4954)"),
    531: (False, Disposition.BOUNCED, "(unassigned)"),
    532: (False, Disposition.BOUNCED, "(unassigned)"),
    533: (False, Disposition.BOUNCED, "(unassigned)"),
    534: (False, Disposition.BOUNCED, "authentication mechanism is too weak (RFC 4954)"),
    535: (False, Disposition.BOUNCED, "authentication credentials invalid (RFC 4954)"),
    536: (False, Disposition.BOUNCED, "(unassigned)"),
    537: (False, Disposition.BOUNCED, "(unassigned)"),
    538: (False, Disposition.BOUNCED, "encryption required for the mechanism (RFC 4954)"),
    550: (True, Disposition.BOUNCED, "mailbox unavailable"),
    551: (True, Disposition.BOUNCED, "user not local"),
    552: (False, Disposition.DEFERRED, "exceeded storage allocation: the mailbox is full"),
    553: (True, Disposition.BOUNCED, "mailbox name not allowed"),
    554: (False, Disposition.BOUNCED, "transaction failed (often policy or spam)"),
    555: (False, Disposition.BOUNCED, "MAIL/RCPT parameters not recognised"),
    556: (True, Disposition.BOUNCED, "domain does not accept mail (RFC 7504)"),
}
NO_CLUE_TEXTS = ("", "Requested action not taken", "Error")


@pytest.mark.parametrize("text", NO_CLUE_TEXTS)
@pytest.mark.parametrize("code", sorted(BASIC_5XX))
def test_a_5xx_without_enhanced_code_or_clue_means_what_its_basic_code_says(
    code: int, text: str
) -> None:
    suppress, disposition, meaning = BASIC_5XX[code]
    v = verdict(code, text)
    assert (v.suppress, v.disposition) == (suppress, disposition), f"{code} {meaning}: {v}"
    assert bounce_is_hard(v) is suppress


@pytest.mark.parametrize("text", NO_CLUE_TEXTS)
def test_a_plain_552_is_a_full_mailbox_deferred_never_a_hard_bounce(text: str) -> None:
    v = verdict(552, text)
    assert v.category is Category.QUOTA
    assert v.disposition is Disposition.DEFERRED and not v.suppress
