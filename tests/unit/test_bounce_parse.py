"""Bounce, complaint and auto-reply parsing against a corpus of real-world formats, and fuzzing:
the parser says what each message is, and never raises whatever it is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkmail.bounces.apply import dedupe_key, identified, parse_message_id
from bulkmail.bounces.parse import KINDS, parse_report
from bulkmail.compose.tokens import make_token, message_id
from bulkmail.delivery.classify import classify_reply, reply_from_dsn

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
SECRET = b"unit-secret-0123456789abcdef"


def test_the_corpus_covers_every_kind_and_each_message_has_an_expectation() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.eml"))
    assert files == sorted(EXPECTED)
    assert len(files) >= 25
    kinds = {e["kind"] for e in EXPECTED.values()}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message_parses_as_expected(name: str) -> None:
    expected = EXPECTED[name]
    report = parse_report((CORPUS / name).read_bytes())
    assert report.kind == expected["kind"], report.notes
    assert report.error == ""
    if report.kind in ("bounce", "delayed"):
        got = [
            [
                r.address,
                r.action,
                r.status,
                classify_reply(reply_from_dsn(r.status, r.diagnostic or None)).category.value,
            ]
            for r in report.recipients
        ]
        assert got == expected["recipients"]
    if report.kind == "complaint":
        assert [[r.address] for r in report.recipients] == expected["recipients"]
    assert report.verp_tokens[:1] == tuple(
        expected.get("verp_token", ()) and [expected["verp_token"]]
    )
    assert report.header_tokens[:1] == tuple(
        expected.get("header_token", ()) and [expected["header_token"]]
    )
    assert report.message_ids[:1] == tuple(
        expected.get("message_id", ()) and [expected["message_id"]]
    )
    assert report.unsubscribe_token == expected.get("unsubscribe_token")
    assert report.reference  # every message can be told apart from every other


def test_our_header_at_the_top_level_is_not_taken_for_a_returned_one() -> None:
    data = (
        b"From: someone@example.com\r\nSubject: hi\r\nX-Bulkmail-Delivery: 1-2-aaaaaaaaaaaaaaaa"
        b"\r\nMessage-ID: <1.2.bbbbbbbbbbbbbbbb@news.test>\r\n\r\nhello\r\n"
    )
    report = parse_report(data)
    assert (report.header_tokens, report.message_ids) == ((), ())
    assert report.reference == "<1.2.bbbbbbbbbbbbbbbb@news.test>"


def test_a_message_without_message_id_gets_the_same_reference_whatever_its_line_ends() -> None:
    lf = b"From: MAILER-DAEMON@x.example\nSubject: failure notice\n\n<a@b.example>:\n550 no\n"
    crlf = lf.replace(b"\n", b"\r\n")
    assert parse_report(lf).reference == parse_report(crlf).reference
    assert parse_report(lf).reference != parse_report(lf + b"more\n").reference


def test_a_person_writing_about_an_undeliverable_message_is_not_a_bounce() -> None:
    data = (
        b"From: Eve <eve@example.com>\r\nSubject: Undeliverable mail to you?\r\n\r\n"
        b"My message to frank@example.com was not delivered, can you check?\r\n"
    )
    assert parse_report(data).kind == "unknown"


def test_message_ids_we_made_verify_and_others_do_not() -> None:
    mid = message_id(SECRET, 12, 345, "News.Test")
    assert parse_message_id(SECRET, mid) == (12, 345)
    assert parse_message_id(SECRET, mid.upper()) == (12, 345)  # a server changed the case
    assert parse_message_id(b"another-secret-0123456789", mid) is None
    forged = mid.replace("<c.", "<d.")
    assert parse_message_id(SECRET, forged) is None
    assert parse_message_id(SECRET, "<not-ours@example.com>") is None


def test_identifiers_are_tried_verp_first_and_forged_ones_are_skipped() -> None:
    good = make_token(SECRET, 7, 8)
    data = (
        f"From: MAILER-DAEMON@x.example\r\nTo: bounces+7-8-aaaaaaaaaaaaaaaa@b.test, "
        f"bounces+{good}@b.test\r\nSubject: failure notice\r\nContent-Type: multipart/"
        f"report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: "
        f"message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nFinal-Recipient: "
        f"rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b\r\nContent-Type:"
        f" text/rfc822-headers\r\n\r\nMessage-ID: {message_id(SECRET, 9, 9, 'n.test')}"
        f"\r\n\r\n--b--\r\n"
    ).encode()
    report = parse_report(data)
    assert report.kind == "bounce"
    assert list(identified(report, SECRET)) == [("verp", 7, 8), ("message-id", 9, 9)]


def test_dedupe_keys_fit_the_column_and_differ_per_delivery() -> None:
    key = dedupe_key("soft_bounce", "<" + "x" * 250 + "@example.com>", 2**62)
    assert len(key) <= 200
    assert key != dedupe_key("soft_bounce", "<" + "x" * 250 + "@example.com>", 2**62 - 1)


# -- fuzzing: the parser never raises ---------------------------------------------------------

_CORPUS_BYTES = [(CORPUS / name).read_bytes() for name in sorted(EXPECTED)]

header_names = st.sampled_from(
    [
        "Content-Type",
        "Content-Transfer-Encoding",
        "From",
        "To",
        "Subject",
        "Message-ID",
        "Auto-Submitted",
        "X-Failed-Recipients",
        "Final-Recipient",
        "Action",
        "Status",
        "Diagnostic-Code",
        "Feedback-Type",
        "X-Bulkmail-Delivery",
        "Delivered-To",
        "Precedence",
    ]
)
header_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "multipart/report; report-type=delivery-status; boundary=b",
            "multipart/report; report-type=feedback-report; boundary=b",
            "message/delivery-status",
            "message/feedback-report",
            "base64",
            "quoted-printable",
            "=?utf-8?b?!!?=",
            "=?bogus?q?x?=",
            "rfc822; <a@b>",
            "failed",
            "delayed",
            "5.1.1",
            "smtp; 550 5.1.1 x",
            "abuse",
            "auto-replied",
            "MAILER-DAEMON@x",
            "bounces+1-2-aaaaaaaaaaaaaaaa@x",
        ]
    ),
)
header_blocks = st.lists(st.tuples(header_names, header_values), max_size=12)


def _assemble(
    headers: list[tuple[str, str]], parts: list[list[tuple[str, str]]], body: bytes
) -> bytes:
    out = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8", "surrogatepass")
    out += b"\r\n"
    for part in parts:
        out += (
            b"--b\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in part).encode("utf-8", "surrogatepass")
            + b"\r\n"
            + body
            + b"\r\n"
        )
    return out + (b"--b--\r\n" if parts else body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    report = parse_report(data)
    assert report.kind in KINDS
    assert report.error == "", report.error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_blocks, st.lists(header_blocks, max_size=4), st.binary(max_size=400))
def test_report_shaped_messages_never_raise(
    headers: list[tuple[str, str]], parts: list[list[tuple[str, str]]], body: bytes
) -> None:
    report = parse_report(_assemble(headers, parts, body))
    assert report.kind in KINDS
    assert report.error == "", report.error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(_CORPUS_BYTES))), st.data())
def test_damaged_corpus_messages_never_raise(index: int, data: st.DataObject) -> None:
    original = bytearray(_CORPUS_BYTES[index])
    cut = data.draw(st.integers(0, len(original)))
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, max(len(original) - 1, 0)), st.integers(0, 255)), max_size=20
        )
    )
    for at, value in flips:
        if original:
            original[at] = value
    report = parse_report(bytes(original[:cut]) if data.draw(st.booleans()) else bytes(original))
    assert report.kind in KINDS
    assert report.error == "", report.error


def test_a_postmaster_acknowledgement_that_names_no_failure_is_not_a_bounce() -> None:
    data = (
        b"From: postmaster@example.org\r\nSubject: Your message was received\r\n\r\n"
        b"Thank you. Your message to\r\n  sales@example.org\r\nwill be answered soon.\r\n"
    )
    assert parse_report(data).kind == "unknown"


def test_a_person_whose_subject_sounds_like_a_bounce_is_not_one() -> None:
    data = (
        b"Return-Path: <eve@example.com>\r\nFrom: Eve <eve@example.com>\r\nSubject: "
        b"Returned mail: see the transcript\r\n\r\nMy reply to\r\n  bob@example.com\r\n"
        b"failed: 550 no such user. Any idea?\r\n"
    )
    assert parse_report(data).kind == "unknown"
