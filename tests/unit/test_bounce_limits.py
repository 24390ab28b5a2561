"""A hostile bounce mailbox cannot stall ``bounces fetch``: parsing is linear and bounded.

Before the fix a 100,000-character From header without an "@" took 14 s (the address pattern
rescanned the run from every position) and a 3.4 MB subject of encoded words 42 s (the stdlib's
RFC 2047 decoder is quadratic). The timeouts are generous; the inputs took far longer before.
"""

from __future__ import annotations

import pytest

from bulkmail.bounces.heuristics import first_address
from bulkmail.bounces.parse import MAX_HEADER, parse_report


@pytest.mark.timeout(10)
def test_a_100000_character_from_header_without_an_at_parses_in_bounded_time() -> None:
    data = b"From: " + b"a" * 100_000 + b"\r\nSubject: hello\r\n\r\nbody\r\n"
    report = parse_report(data)
    assert (report.kind, report.sender, report.error) == ("unknown", "", "")


@pytest.mark.timeout(10)
def test_a_long_run_without_an_at_is_scanned_once_by_the_address_pattern() -> None:
    assert first_address("x" * 400_000) == ""
    assert first_address("x" * 400_000 + " bob@example.com") == "bob@example.com"


@pytest.mark.timeout(10)
def test_a_3_4_mb_subject_of_encoded_words_parses_in_bounded_time_and_is_capped() -> None:
    word = b"=?utf-8?q?abc?= "
    data = b"From: x@y.test\r\nSubject: " + word * (3_400_000 // len(word)) + b"\r\n\r\nbody\r\n"
    report = parse_report(data)
    assert report.error == ""
    assert report.subject.startswith("abcabc") and len(report.subject) <= MAX_HEADER


@pytest.mark.timeout(20)
def test_a_daemon_bounce_with_megabytes_of_text_and_addresses_parses_in_bounded_time() -> None:
    head = b"From: MAILER-DAEMON@x.test\r\nSubject: failure notice\r\n\r\nPermanent error.\r\n"
    lines = b"".join(b" user%d@example.com: 550 5.1.1 no\r\n" % i for i in range(100_000))
    report = parse_report(head + lines + b"q" * 2_000_000 + b"\r\n")
    assert report.kind == "bounce" and report.error == ""
