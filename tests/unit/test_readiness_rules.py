"""The readiness rules (bulkmail.readiness.rules): pure verdicts on names, records and answers."""

from __future__ import annotations

import pytest

from bulkmail.readiness.rules import (
    LISTED,
    QUERY_ERROR,
    UNEXPECTED,
    DmarcPolicy,
    aligned,
    dmarc_problem,
    dmarc_records,
    dnsbl_query_name,
    dnsbl_verdict,
    generic_ptr_reason,
    join_txt,
    organizational_domain,
    parse_dkim_record,
    parse_dmarc,
    parse_tag_list,
    published_key_bits,
    spf_hardened,
    spf_record_for,
    spf_records,
    spf_risks,
    spf_with_ip,
    txt_record_text,
    unsubscribe_url_problem,
)
from bulkmail.signing import dns_txt_value, generate_private_key, load_private_key

# -- PTR -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, ip",
    [
        ("192-0-2-10.dsl.example.net", "192.0.2.10"),
        ("10.2.0.192.broadband.example.net", "192.0.2.10"),  # reversed octets
        ("host-192.0.2.10.example.net", "192.0.2.10"),
        ("c000020a.example.net", "192.0.2.10"),  # hex
        ("dyn-77.example.net", "192.0.2.10"),
        ("pool-a.example.net", "192.0.2.10"),
        ("dhcp.example.net", "192.0.2.10"),
        ("CPE.Cable.Example.NET.", "192.0.2.10"),
    ],
)
def test_generic_reverse_names_are_recognised(name: str, ip: str) -> None:
    assert generic_ptr_reason(name, ip) is not None


@pytest.mark.parametrize(
    "name, ip",
    [
        ("mail.example.com", "192.0.2.10"),
        ("out2.news.example.com", "192.0.2.10"),
        ("smtp10.example.com", "192.0.2.10"),  # one octet alone is not the address
        ("carpool.example.com", "192.0.2.10"),  # "pool" inside a word is not the word
        ("mail.example.com", "2001:db8::25"),
    ],
)
def test_proper_mail_server_names_are_not_generic(name: str, ip: str) -> None:
    assert generic_ptr_reason(name, ip) is None


def test_generic_ipv6_reverse_name_is_recognised() -> None:
    assert (
        generic_ptr_reason("host-20010db8000000000000000000000025.example.net", "2001:db8::25")
        is not None
    )


# -- DKIM records ----------------------------------------------------------------------------


def test_tag_lists_allow_whitespace_and_a_trailing_semicolon() -> None:
    assert parse_tag_list(" v = DKIM1 ;k=rsa;\r\n p=AB CD ; ") == {
        "v": "DKIM1",
        "k": "rsa",
        "p": "AB CD",
    }


@pytest.mark.parametrize("text", ["v=DKIM1; v=DKIM1; p=x", "v=DKIM1; garbage; p=x", "=x"])
def test_broken_tag_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tag_list(text)


def test_dkim_record_defaults_to_rsa_and_strips_whitespace_in_the_key() -> None:
    record = parse_dkim_record("p=MIIB IjAN\t BgkqhkiG")
    assert (record.version, record.key_type, record.public_key) == (None, "rsa", "MIIBIjANBgkqhkiG")
    assert not record.revoked


def test_empty_p_means_revoked() -> None:
    assert parse_dkim_record("v=DKIM1; k=rsa; p=").revoked


@pytest.mark.parametrize(
    "text, error",
    [
        ("v=DKIM1; k=rsa", "no p="),
        ("v=DKIM2; p=abc", "v=DKIM2"),
    ],
)
def test_dkim_records_without_a_key_or_with_another_version_are_refused(
    text: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        parse_dkim_record(text)


def test_split_txt_strings_are_joined_without_separators() -> None:
    assert join_txt([b"v=DKIM1; k=rsa; p=MII", b"BIjAN"]) == "v=DKIM1; k=rsa; p=MIIBIjAN"


@pytest.mark.parametrize("algorithm, bits, expected", [("rsa", 1024, 1024), ("ed25519", 0, None)])
def test_published_key_bits(algorithm: str, bits: int, expected: int | None) -> None:
    record = parse_dkim_record(
        dns_txt_value(load_private_key(generate_private_key(algorithm, bits or 2048)))
    )
    assert published_key_bits(record) == expected


@pytest.mark.parametrize("text", ["k=rsa; p=not*base64", "k=rsa; p=AAAA", "k=ed25519; p=AAAA"])
def test_unreadable_published_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        published_key_bits(parse_dkim_record(text))


def test_zone_line_quotes_every_string() -> None:
    assert (
        txt_record_text("s1._domainkey.example.com", ["ab", "cd"])
        == 's1._domainkey.example.com. IN TXT "ab" "cd"'
    )


# -- SPF -------------------------------------------------------------------------------------


def test_only_v_spf1_records_are_spf_records() -> None:
    texts = ["v=spf1 -all", "V=SPF1 a -all", "v=spf10 -all", "google-site-verification=x", "v=spf1"]
    assert spf_records(texts) == ["v=spf1 -all", "V=SPF1 a -all", "v=spf1"]


@pytest.mark.parametrize(
    "record, ip, expected",
    [
        ("v=spf1 mx ~all", "192.0.2.10", "v=spf1 mx ip4:192.0.2.10 ~all"),
        (
            "v=spf1 include:_spf.example.net -all",
            "2001:db8::25",
            "v=spf1 include:_spf.example.net ip6:2001:db8::25 -all",
        ),
        (
            "v=spf1 a redirect=_spf.example.com",
            "192.0.2.10",
            "v=spf1 a ip4:192.0.2.10 redirect=_spf.example.com",
        ),
        ("v=spf1 a", "192.0.2.10", "v=spf1 a ip4:192.0.2.10"),
    ],
)
def test_the_ip_is_added_before_all_or_redirect(record: str, ip: str, expected: str) -> None:
    assert spf_with_ip(record, ip) == expected


def test_minimal_spf_record_lists_the_ips_then_fails_the_rest() -> None:
    assert (
        spf_record_for(["192.0.2.10", "2001:db8::25"])
        == "v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 -all"
    )


# -- DMARC -----------------------------------------------------------------------------------


def test_dmarc_records_start_with_the_version_tag() -> None:
    texts = ["v=DMARC1; p=none", "v=DMARC1", "p=none; v=DMARC1", "v=spf1 -all", "v=DMARC10; p=none"]
    assert dmarc_records(texts) == ["v=DMARC1; p=none", "v=DMARC1"]


def test_dmarc_record_is_read_with_relaxed_defaults() -> None:
    assert parse_dmarc("v=DMARC1; p=Quarantine; rua=mailto:d@example.com") == DmarcPolicy(
        "quarantine", "r", "r", "v=DMARC1; p=Quarantine; rua=mailto:d@example.com"
    )
    assert parse_dmarc("v=DMARC1; p=none; adkim=s; aspf=s").adkim == "s"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("v=DMARC1; rua=mailto:d@example.com", "no p="),
        ("v=DMARC1; p=block", "p=block"),
        ("v=DMARC1; p=none", None),
        ("v=DMARC1; p=reject", None),
    ],
)
def test_dmarc_policy_must_be_present_and_known(text: str, problem: str | None) -> None:
    found = dmarc_problem(parse_dmarc(text))
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(
    "domain, org",
    [
        ("news.example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("Example.COM.", "example.com"),
        ("bounces.sender.test", "sender.test"),  # an unknown TLD counts as a public suffix
        ("co.uk", "co.uk"),
    ],
)
def test_organisational_domain_comes_from_the_bundled_public_suffix_list(
    domain: str, org: str
) -> None:
    assert organizational_domain(domain) == org


@pytest.mark.parametrize(
    "from_domain, other, mode, expected",
    [
        ("example.com", "example.com", "s", True),
        ("news.example.com", "example.com", "r", True),
        ("news.example.com", "bounces.example.com", "r", True),
        ("news.example.com", "example.com", "s", False),
        ("example.com", "example.net", "r", False),
        ("example.co.uk", "other.co.uk", "r", False),
    ],
)
def test_alignment_relaxed_and_strict(
    from_domain: str, other: str, mode: str, expected: bool
) -> None:
    assert aligned(from_domain, other, mode) is expected


# -- blocklists ------------------------------------------------------------------------------


def test_dnsbl_query_names_reverse_octets_and_nibbles() -> None:
    assert dnsbl_query_name("192.0.2.10", "zen.spamhaus.org") == "10.2.0.192.zen.spamhaus.org"
    name = dnsbl_query_name("2001:db8::25", "bl.test.")
    assert name == "5.2.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.bl.test"


@pytest.mark.parametrize(
    "answers, verdict",
    [
        ([], None),
        (["127.0.0.2"], LISTED),
        (["127.0.0.4", "127.0.0.10"], LISTED),
        (["127.255.255.254"], QUERY_ERROR),
        (["127.255.255.252"], QUERY_ERROR),
        (["127.0.0.2", "127.255.255.255"], QUERY_ERROR),
        (["198.51.100.7"], UNEXPECTED),
    ],
)
def test_dnsbl_answers(answers: list[str], verdict: str | None) -> None:
    assert dnsbl_verdict(answers) == verdict


# -- unsubscribe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://news.example.com/unsubscribe", True),
        ("http://news.example.com/unsubscribe", False),
        ("https://localhost:8080/unsubscribe", False),
        ("https://127.0.0.1/u", False),
        ("https://10.1.2.3/u", False),
        ("https://9.9.9.9/u", True),
    ],
)
def test_unsubscribe_url_must_be_public_https(url: str, ok: bool) -> None:
    assert (unsubscribe_url_problem(url) is None) is ok


# -- SPF terms that weaken a passing record (RFC 7208 §5.1, §5.5) ------------------------------


@pytest.mark.parametrize(
    ("record", "risky"),
    [
        ("v=spf1 +all", ["'+all'"]),
        ("v=spf1 mx all", ["'all'"]),
        ("v=spf1 mx ?all", ["'?all'"]),
        ("v=spf1 ptr -all", ["'ptr'"]),
        ("v=spf1 ?ptr:example.com ~all", ["'?ptr:example.com'"]),
        ("v=spf1 ptr +all", ["'ptr'", "'+all'"]),
        ("v=spf1 mx ~all", []),
        ("v=spf1 ip4:192.0.2.0/24 -all", []),
        ("v=spf1 include:ptr.example.net -all", []),
    ],
)
def test_spf_risks_name_plus_all_neutral_all_and_ptr(record: str, risky: list[str]) -> None:
    risks = spf_risks(record)
    assert [r.split(" ")[0] for r in risks] == risky


def test_hardened_spf_drops_ptr_softens_all_and_authorises_the_ip() -> None:
    assert spf_hardened("v=spf1 +all", "192.0.2.10") == "v=spf1 ip4:192.0.2.10 ~all"
    assert spf_hardened("v=spf1 a ptr ?all", "192.0.2.10") == "v=spf1 a ip4:192.0.2.10 ~all"
    assert spf_hardened("v=spf1 ip4:192.0.2.10 ptr -all", "192.0.2.10") == (
        "v=spf1 ip4:192.0.2.10 -all"
    )
