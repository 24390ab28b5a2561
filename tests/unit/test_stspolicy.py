"""The MTA-STS rules (RFC 8461) as pure functions: TXT record, policy file, mx matching."""

from __future__ import annotations

import pytest

from bulkmail.config import parse_settings
from bulkmail.delivery.mtasts import FetchError, parse_response
from bulkmail.delivery.stspolicy import PolicyError, mx_matches, parse_policy, parse_txt
from bulkmail.errors import ConfigError

GOOD = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "max_age: 604800\r\n"
)


def test_a_policy_parses_mode_patterns_and_max_age() -> None:
    policy = parse_policy(GOOD)
    assert policy.mode == "enforce"
    assert policy.mx == ("mail.example.com", "*.example.net")
    assert policy.max_age == 604800


def test_lf_line_ends_unknown_keys_and_the_first_of_a_repeated_key_are_accepted() -> None:
    text = "version: STSv1\nmode: testing\nmode: enforce\nfoo: bar\nmx: MX.Example.COM.\n"
    text += "max_age: 0\n"
    policy = parse_policy(text)
    assert (policy.mode, policy.mx, policy.max_age) == ("testing", ("mx.example.com",), 0)


def test_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (GOOD.replace("STSv1", "STSv2"), "version"),
        (GOOD.replace("enforce", "strict"), "mode"),
        (GOOD.replace("604800", "31557601"), "max_age"),
        (GOOD.replace("604800", "-1"), "max_age"),
        (GOOD.replace("max_age: 604800\r\n", ""), "max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 5\n", "mx"),
        (GOOD.replace("mail.example.com", "mail..example"), "mx"),
        (GOOD + "no colon here\n", "line 6"),
    ],
)
def test_an_invalid_policy_names_what_is_wrong(text: str, what: str) -> None:
    with pytest.raises(PolicyError, match=what):
        parse_policy(text)


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=1"], "1"),
        (["v=STSv1; id=1", "v=STSv1; id=2"], None),  # two records: no policy
        (["v=STSv1; id=not-alnum"], None),
        (["v=STSv1; id=" + "a" * 33], None),
        (["v=STSv1"], None),
        (["v=STSv10; id=1"], None),
        ([], None),
    ],
)
def test_txt_record_gives_the_policy_id(records: list[str], expected: str | None) -> None:
    assert parse_txt(records) == expected


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "MAIL.example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "mx1.example.net", False),
    ],
)
def test_mx_patterns_match_one_leftmost_label(pattern: str, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches


def test_http_response_must_be_200_text_plain() -> None:
    body = GOOD.encode()
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    assert parse_response(ok, "u") == GOOD
    with pytest.raises(FetchError, match="HTTP 301"):
        parse_response(b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n", "u")
    with pytest.raises(FetchError, match="text/html"):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + body, "u")
    with pytest.raises(FetchError, match="larger"):
        parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 70000, "u")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"sender": {"mta_sts": "strict"}}, "sender.mta_sts"),
        ({"sender": {"dane": "yes"}}, "sender.dane"),
        ({"limits": {"default": {}, "a.test": {"mta_sts": "maybe"}}}, "limits.a.test.mta_sts"),
    ],
)
def test_tls_policy_settings_name_a_bad_value(data: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where) as info:
        parse_settings(data, "bulkmail.toml")
    assert "\n" not in str(info.value)


def test_per_domain_tls_policy_settings_are_read() -> None:
    s = parse_settings(
        {"limits": {"default": {}, "A.test": {"mta_sts": "off", "dane": "on"}}}, "x.toml"
    )
    assert (s.limits_for("a.test").mta_sts, s.limits_for("a.test").dane) == ("off", "on")
    assert (s.sender.mta_sts, s.sender.dane) == ("enforce", "off")
