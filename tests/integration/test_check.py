"""The readiness checker against a real DNS server on loopback (bulkmail.peers.dns) serving a
crafted zone, and against local SMTP servers for the TLS checks.

The ``sender`` fixture publishes a sender that passes every check; each test breaks one thing
right where it is written and pins down the result: its status, its finding and its remedy.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import spf
import trustme
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from bulkmail.config import Settings, parse_settings
from bulkmail.delivery.engine import transport_settings
from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.peers.smtp import SmtpServer
from bulkmail.readiness.checker import run_checks
from bulkmail.readiness.dkimcheck import check_dkim
from bulkmail.readiness.dnschecks import (
    check_dmarc,
    check_dnsbl,
    check_from_mx,
    check_ptr,
    check_return_path,
    check_spf,
)
from bulkmail.readiness.lookup import Lookup
from bulkmail.readiness.results import CheckResult
from bulkmail.readiness.tlscheck import check_relay_tls, probe_mx
from bulkmail.signing import dns_txt_value, generate_private_key, load_private_key, split_txt

IP = "192.0.2.10"
DOMAIN = "sender.test"
HELO = "mail.sender.test"
RP = "bounces.sender.test"
DKIM_NAME = f"s1._domainkey.{DOMAIN}"
PASSWORD = "relay-secret-42"
#: A 512-bit RSA public key (SPKI, base64): too short for any receiver.
SHORT_KEY = (
    "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKGY9WpsAAokMSu3uUtV1+FZG8Hcem4rGmFKenfjRhrDLFXnHocT"
    "fUtxGLW41IHkWR/6SF7C3yIA3LzEWWFf+R0CAwEAAQ=="
)


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return generate_private_key("rsa", 2048)


def record_of(pem: bytes) -> str:
    return dns_txt_value(load_private_key(pem))


@dataclass
class Sender:
    """A sender that passes every check, its DNS zone and server, and its config."""

    zone: Zone
    server: DnsServer
    root: Path
    config: dict[str, dict[str, Any]]

    def settings(self, **sections: dict[str, Any]) -> Settings:
        data = {name: dict(values) for name, values in self.config.items()}
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return parse_settings(data, str(self.root / "bulkmail.toml"), self.root)

    def lookup(self, timeout: float = 1.0) -> Lookup:
        return Lookup(["127.0.0.1"], self.server.port, timeout)

    def cli(self, *args: str, **sections: dict[str, Any]) -> Result:
        """``bulkmail --config <this sender's config> *args``."""
        data = {name: dict(values) for name, values in self.config.items()}
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        path = self.root / "bulkmail.toml"
        path.write_text(
            "".join(
                f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                for name, values in data.items()
            ),
            encoding="utf-8",
        )
        return CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)


@pytest.fixture
def sender(dns_zone: Zone, dns_server: DnsServer, tmp_path: Path, rsa_pem: bytes) -> Sender:
    (tmp_path / "s1.pem").write_bytes(rsa_pem)
    dns_zone.add_ptr(IP, f"{HELO}.")
    dns_zone.add(HELO, "A", IP)
    dns_zone.add(HELO, "TXT", "v=spf1 a -all")
    dns_zone.add(RP, "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    dns_zone.add(RP, "MX", f"10 {HELO}.")
    dns_zone.add(DOMAIN, "MX", f"10 {HELO}.")
    dns_zone.add(DKIM_NAME, "TXT", split_txt(record_of(rsa_pem)))
    dns_zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@sender.test")
    config = {
        "sender": {"helo": HELO, "return_path_domain": RP},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_server.port, "timeout": 1.0},
        "dkim": {"domain": DOMAIN, "selector": "s1", "key_file": "s1.pem"},
        "check": {"ips": [IP], "dnsbl_zones": ["bl.test", "zen.test"]},
        "unsubscribe": {"url": "https://news.sender.test/unsubscribe"},
    }
    return Sender(dns_zone, dns_server, tmp_path, config)


def assert_result(result: CheckResult, status: str, *in_detail: str, remedy: str = "") -> None:
    assert result.status == status, result
    for text in in_detail:
        assert text in result.detail, result
    assert remedy in result.remedy, result


# -- the whole run -----------------------------------------------------------------------------


def test_a_ready_sender_passes_every_check_and_exits_0(sender: Sender) -> None:
    result = sender.cli("check", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert all(set(row) == {"check", "status", "detail", "remedy"} for row in rows)
    assert [row for row in rows if row["status"] != "pass"] == []
    checks = [row["check"] for row in rows]
    for expected in (
        f"ptr {IP}",
        f"spf {RP} {IP}",
        f"spf-helo {HELO} {IP}",
        f"dkim {DKIM_NAME}",
        f"dmarc {DOMAIN}",
        f"alignment {DOMAIN}",
        f"return-path {RP}",
        f"from-mx {DOMAIN}",
        f"dnsbl bl.test {IP}",
        f"dnsbl zen.test {IP}",
        "tls policy",
        "unsubscribe",
        "requirements Gmail",
        "requirements Yahoo",
        "requirements Outlook.com",
    ):
        assert expected in checks


def test_a_failing_check_exits_1_and_the_table_shows_its_remedy(sender: Sender) -> None:
    sender.zone.remove(f"_dmarc.{DOMAIN}")

    result = sender.cli("check")

    assert result.exit_code == 1
    assert "Sender readiness" in result.output and "Bulk-sender requirements" in result.output
    assert (
        '_dmarc.sender.test. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@sender.test"'
        in result.output
    )
    assert "NOT MET" in result.output


def test_dns_timeouts_are_inconclusive_not_a_crash(sender: Sender) -> None:
    sender.zone.timeout("10.2.0.192.in-addr.arpa")
    sender.zone.timeout("10.2.0.192.bl.test")

    result = sender.cli("check", "--json", dns={"timeout": 0.5})

    assert result.exit_code == 0, result.output
    statuses = {row["check"]: row["status"] for row in json.loads(result.output)}
    assert statuses[f"ptr {IP}"] == "inconclusive"
    assert statuses[f"dnsbl bl.test {IP}"] == "inconclusive"
    assert statuses[f"dnsbl zen.test {IP}"] == "pass"
    assert statuses["requirements Gmail"] == "inconclusive"


@pytest.mark.parametrize(
    "sections, where",
    [
        ({"check": {"ips": []}}, "check.ips"),
        ({"check": {"ips": ["192.0.2.300"]}}, "check.ips"),
        ({"dkim": {"key_file": "missing.pem"}}, "dkim.key_file"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    sender: Sender, sections: dict[str, Any], where: str
) -> None:
    result = sender.cli("check", **sections)

    assert result.exit_code == 2
    assert result.stderr.startswith("bulkmail: error: ") and where in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_extra_ips_from_the_command_line_are_checked_too(sender: Sender) -> None:
    report = run_checks(sender.settings(), ips=["192.0.2.77"])

    by_check = {r.check: r for r in report.results}
    assert_result(by_check["ptr 192.0.2.77"], "fail", "no PTR record")
    assert_result(by_check[f"ptr {IP}"], "pass")
    assert report.exit_code == 1


def test_a_campaign_from_domain_is_checked_with_the_org_domain_dmarc(
    sender: Sender, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)
    sender.config["database"] = {"url": db_url}
    assert sender.cli("init").exit_code == 0
    assert sender.cli("lists", "create", "news").exit_code == 0
    created = sender.cli(
        "campaigns",
        "create",
        "--name",
        "May",
        "--list",
        "news",
        "--subject",
        "Hi",
        "--from",
        "News <news@letters.sender.test>",
        "--template",
        "newsletter",
        "--json",
    )
    campaign_id = json.loads(created.output)["id"]

    result = sender.cli("check", "--campaign", str(campaign_id), "--json")

    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows["dmarc letters.sender.test"]["status"] == "pass"
    assert "organisational" in rows["dmarc letters.sender.test"]["detail"]
    assert rows["alignment letters.sender.test"]["status"] == "pass"
    assert rows["from-mx letters.sender.test"]["status"] == "fail"
    assert result.exit_code == 1


# -- PTR -------------------------------------------------------------------------------------


def test_ptr_forward_confirmed_and_equal_to_the_ehlo_name_passes(sender: Sender) -> None:
    assert_result(check_ptr(sender.lookup(), IP, HELO), "pass", "forward-confirmed")


def test_no_ptr_fails_with_what_to_ask_for(sender: Sender) -> None:
    sender.zone.remove("10.2.0.192.in-addr.arpa")
    assert_result(
        check_ptr(sender.lookup(), IP, HELO), "fail", "no PTR", remedy=f"set its PTR to {HELO}"
    )


def test_ptr_that_does_not_resolve_back_fails(sender: Sender) -> None:
    sender.zone.remove(HELO, "A")
    sender.zone.add(HELO, "A", "192.0.2.99")
    assert_result(
        check_ptr(sender.lookup(), IP, HELO),
        "fail",
        "not forward-confirmed",
        "192.0.2.99",
        remedy=f"{HELO}. IN A {IP}",
    )


def test_generic_ptr_fails(sender: Sender) -> None:
    sender.zone.remove("10.2.0.192.in-addr.arpa")
    sender.zone.add_ptr(IP, "192-0-2-10.dyn.isp.test.")
    sender.zone.add("192-0-2-10.dyn.isp.test", "A", IP)
    assert_result(
        check_ptr(sender.lookup(), IP, HELO),
        "fail",
        "looks generic",
        remedy=f"set its PTR to {HELO}",
    )


def test_two_ptr_records_fail(sender: Sender) -> None:
    sender.zone.add_ptr(IP, "other.sender.test.")
    assert_result(check_ptr(sender.lookup(), IP, HELO), "fail", "2 PTR records")


def test_ehlo_name_other_than_the_ptr_warns_with_the_setting(sender: Sender) -> None:
    assert_result(
        check_ptr(sender.lookup(), IP, "out.sender.test"),
        "warn",
        remedy=f'[sender] helo = "{HELO}"',
    )


def test_ptr_timeout_is_inconclusive(sender: Sender) -> None:
    sender.zone.timeout("10.2.0.192.in-addr.arpa")
    assert_result(check_ptr(sender.lookup(timeout=0.5), IP, HELO), "inconclusive", "0.5 s")


# -- SPF -------------------------------------------------------------------------------------


def test_spf_pass_for_the_return_path_and_the_ehlo_name(sender: Sender) -> None:
    lookup = sender.lookup()
    assert_result(check_spf(lookup, RP, IP, helo=HELO), "pass")
    assert_result(check_spf(lookup, HELO, IP, helo=HELO, identity="helo"), "pass")


def test_spf_evaluation_restores_pyspf_own_lookup(sender: Sender) -> None:
    original = spf.DNSLookup
    check_spf(sender.lookup(), RP, IP, helo=HELO)
    assert spf.DNSLookup is original


def test_two_spf_records_fail(sender: Sender) -> None:
    sender.zone.add(RP, "TXT", "v=spf1 ip4:198.51.100.1 -all")
    assert_result(
        check_spf(sender.lookup(), RP, IP, helo=HELO),
        "fail",
        "2 SPF records",
        remedy="merge them into one",
    )


def test_spf_not_authorising_the_ip_fails_with_the_fixed_record(sender: Sender) -> None:
    sender.zone.remove(RP, "TXT")
    sender.zone.add(RP, "TXT", "v=spf1 ip4:198.51.100.0/24 ~all")
    assert_result(
        check_spf(sender.lookup(), RP, IP, helo=HELO),
        "fail",
        "softfail",
        remedy=f'{RP}. IN TXT "v=spf1 ip4:198.51.100.0/24 ip4:{IP} ~all"',
    )


def test_no_spf_record_fails_with_one_to_publish(sender: Sender) -> None:
    sender.zone.remove(RP, "TXT")
    assert_result(
        check_spf(sender.lookup(), RP, IP, helo=HELO),
        "fail",
        "no SPF record",
        remedy=f'{RP}. IN TXT "v=spf1 ip4:{IP} -all"',
    )


def test_spf_over_the_lookup_limit_fails(sender: Sender) -> None:
    includes = [f"inc{n}.sender.test" for n in range(11)]
    for name in includes:
        sender.zone.add(name, "TXT", "v=spf1 ip4:198.51.100.7 -all")
    sender.zone.remove(RP, "TXT")
    sender.zone.add(
        RP, "TXT", " ".join(["v=spf1", *(f"include:{n}" for n in includes), f"ip4:{IP}", "-all"])
    )
    assert_result(
        check_spf(sender.lookup(), RP, IP, helo=HELO),
        "fail",
        "more than 10 DNS",
        remedy="ip4:/ip6:",
    )


def test_spf_include_timing_out_is_inconclusive(sender: Sender) -> None:
    sender.zone.remove(RP, "TXT")
    sender.zone.add(RP, "TXT", "v=spf1 include:slow.sender.test -all")
    sender.zone.timeout("slow.sender.test")
    assert_result(
        check_spf(sender.lookup(timeout=0.5), RP, IP, helo=HELO), "inconclusive", "temperror"
    )


# -- DKIM ------------------------------------------------------------------------------------


def test_dkim_record_in_split_strings_matching_the_key_passes(
    sender: Sender, rsa_pem: bytes
) -> None:
    assert len(split_txt(record_of(rsa_pem))) > 1  # the fixture publishes several strings
    assert_result(
        check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem),
        "pass",
        "2048 bits",
        "signature verifies",
    )


def test_dkim_record_split_anywhere_is_joined(sender: Sender, rsa_pem: bytes) -> None:
    text = record_of(rsa_pem)
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", [text[:7], text[7:100], text[100:300], text[300:]])
    assert_result(check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem), "pass")


def test_dkim_record_missing_fails_with_the_record_to_publish(
    sender: Sender, rsa_pem: bytes
) -> None:
    sender.zone.remove(DKIM_NAME)
    result = check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem)
    strings = split_txt(record_of(rsa_pem))
    assert_result(
        result,
        "fail",
        "no DKIM key record",
        remedy=f"{DKIM_NAME}. IN TXT " + " ".join(f'"{s}"' for s in strings),
    )


def test_revoked_dkim_key_fails(sender: Sender, rsa_pem: bytes) -> None:
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", "v=DKIM1; k=rsa; p=")
    assert_result(check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem), "fail", "revoked")


def test_too_short_dkim_key_fails(sender: Sender, rsa_pem: bytes) -> None:
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", f"v=DKIM1; k=rsa; p={SHORT_KEY}")
    assert_result(check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem), "fail", "512 bits")


def test_dkim_record_of_another_key_fails(sender: Sender, rsa_pem: bytes) -> None:
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", split_txt(record_of(generate_private_key("rsa", 1024))))
    assert_result(check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem), "fail", "not the public half")


def test_dkim_record_of_the_wrong_key_type_fails(sender: Sender, rsa_pem: bytes) -> None:
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", record_of(generate_private_key("ed25519")))
    assert_result(check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem), "fail", "k=ed25519")


def test_dkim_record_receivers_cannot_use_fails_the_sign_and_verify(
    sender: Sender, rsa_pem: bytes
) -> None:
    public = record_of(rsa_pem).split("p=")[1]
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", split_txt(f"v=DKIM1; k=rsa; s=tlsrpt; p={public}"))
    assert_result(
        check_dkim(sender.lookup(), DOMAIN, "s1", rsa_pem), "fail", "test signature did not verify"
    )


def test_dkim_key_of_1024_bits_warns(sender: Sender) -> None:
    pem = generate_private_key("rsa", 1024)
    sender.zone.remove(DKIM_NAME)
    sender.zone.add(DKIM_NAME, "TXT", record_of(pem))
    assert_result(
        check_dkim(sender.lookup(), DOMAIN, "s1", pem), "warn", "1024 bits", remedy="--bits 2048"
    )


def test_ed25519_key_is_checked_when_configured(sender: Sender) -> None:
    pem = generate_private_key("ed25519")
    (sender.root / "e1.pem").write_bytes(pem)
    sender.zone.add(f"e1._domainkey.{DOMAIN}", "TXT", record_of(pem))

    report = run_checks(
        sender.settings(dkim={"ed25519_selector": "e1", "ed25519_key_file": "e1.pem"})
    )

    by_check = {r.check: r for r in report.results}
    assert_result(by_check[f"dkim-ed25519 e1._domainkey.{DOMAIN}"], "pass", "signature verifies")
    assert_result(by_check[f"dkim {DKIM_NAME}"], "pass")


def test_an_ed25519_key_alone_fails_the_dkim_requirement(sender: Sender) -> None:
    pem = generate_private_key("ed25519")
    (sender.root / "e1.pem").write_bytes(pem)
    sender.zone.add(f"e1._domainkey.{DOMAIN}", "TXT", record_of(pem))
    settings = sender.settings(
        dkim={
            "key_file": "",
            "selector": "",
            "ed25519_selector": "e1",
            "ed25519_key_file": "e1.pem",
        }
    )

    report = run_checks(settings)

    by_check = {r.check: r for r in report.results}
    assert_result(by_check[f"dkim-ed25519 e1._domainkey.{DOMAIN}"], "pass")
    assert_result(by_check["dkim"], "fail", "only an Ed25519 key")
    assert {v.name: v.status for v in report.requirements}["DKIM signature verifies"] == "fail"


def test_no_dkim_key_fails_the_check_and_says_sending_is_refused(sender: Sender) -> None:
    result = sender.cli("check", "--json", dkim={"key_file": ""})

    assert result.exit_code == 1, result.output
    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows["dkim"]["status"] == "fail"
    assert "unsigned" in rows["dkim"]["detail"] and "refuse" in rows["dkim"]["detail"]
    assert "required = false" in rows["dkim"]["detail"]
    assert "bulkmail dkim keygen" in rows["dkim"]["remedy"]


# -- DMARC and alignment ---------------------------------------------------------------------


def test_dmarc_record_of_the_from_domain_passes(sender: Sender) -> None:
    result, policy = check_dmarc(sender.lookup(), DOMAIN)
    assert_result(result, "pass", "p=none")
    assert policy is not None and policy.p == "none"


def test_dmarc_falls_back_to_the_organisational_domain(sender: Sender) -> None:
    result, _ = check_dmarc(sender.lookup(), "news.sender.test")
    assert_result(result, "pass", "_dmarc.sender.test", "organisational")


def test_dmarc_missing_fails_with_a_record_to_publish(sender: Sender) -> None:
    sender.zone.remove(f"_dmarc.{DOMAIN}")
    result, policy = check_dmarc(sender.lookup(), DOMAIN)
    assert_result(
        result, "fail", "no DMARC record", remedy='_dmarc.sender.test. IN TXT "v=DMARC1; p=none;'
    )
    assert policy is None


def test_two_dmarc_records_fail(sender: Sender) -> None:
    sender.zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")
    assert_result(check_dmarc(sender.lookup(), DOMAIN)[0], "fail", "2 DMARC records")


def test_dmarc_without_p_fails(sender: Sender) -> None:
    sender.zone.remove(f"_dmarc.{DOMAIN}")
    sender.zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; rua=mailto:d@sender.test")
    assert_result(check_dmarc(sender.lookup(), DOMAIN)[0], "fail", "no p=")


def test_misaligned_from_domain_fails_the_run(sender: Sender) -> None:
    sender.zone.add("_dmarc.other.test", "TXT", "v=DMARC1; p=none")

    report = run_checks(sender.settings(), from_domain="other.test")

    by_check = {r.check: r for r in report.results}
    assert_result(
        by_check["alignment other.test"], "fail", "neither", remedy='[dkim] domain = "other.test"'
    )
    assert report.exit_code == 1


# -- MX of the sending domains ---------------------------------------------------------------


def test_null_mx_on_the_return_path_domain_fails(sender: Sender) -> None:
    sender.zone.remove(RP, "MX")
    sender.zone.add(RP, "MX", "0 .")
    assert_result(
        check_return_path(sender.lookup(), RP), "fail", "null MX", remedy="remove the null MX"
    )


def test_return_path_domain_with_only_an_address_passes(sender: Sender) -> None:
    sender.zone.remove(RP, "MX")
    sender.zone.add(RP, "A", IP)
    assert_result(check_return_path(sender.lookup(), RP), "pass", "implicit MX")


def test_from_domain_without_mx_fails(sender: Sender) -> None:
    sender.zone.remove(DOMAIN, "MX")
    assert_result(check_from_mx(sender.lookup(), DOMAIN), "fail", "no MX")


def test_from_domain_with_a_null_mx_fails(sender: Sender) -> None:
    sender.zone.remove(DOMAIN, "MX")
    sender.zone.add(DOMAIN, "MX", "0 .")
    assert_result(check_from_mx(sender.lookup(), DOMAIN), "fail", "null MX")


# -- blocklists ------------------------------------------------------------------------------


def test_ip_not_on_the_blocklist_passes(sender: Sender) -> None:
    assert_result(check_dnsbl(sender.lookup(), IP, "bl.test"), "pass", "not listed")


def test_listed_ip_fails_with_the_reason(sender: Sender) -> None:
    sender.zone.add("10.2.0.192.bl.test", "A", "127.0.0.2")
    sender.zone.add("10.2.0.192.bl.test", "TXT", "Listed: spam trap hits, see bl.test/x")
    assert_result(
        check_dnsbl(sender.lookup(), IP, "bl.test"),
        "fail",
        "listed on bl.test",
        "127.0.0.2",
        "spam trap hits",
    )


def test_spamhaus_error_answer_is_inconclusive_not_listed(sender: Sender) -> None:
    sender.zone.add("10.2.0.192.zen.test", "A", "127.255.255.254")
    result = check_dnsbl(sender.lookup(), IP, "zen.test")
    assert_result(result, "inconclusive", "refused the query", "not a listing")


def test_dnsbl_timeout_is_inconclusive(sender: Sender) -> None:
    sender.zone.timeout("10.2.0.192.bl.test")
    assert_result(check_dnsbl(sender.lookup(timeout=0.5), IP, "bl.test"), "inconclusive")


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


ServerFactory = Callable[..., SmtpServer]
ContextFactory = Callable[..., ssl.SSLContext]


def relay_config(server: SmtpServer, **relay: Any) -> dict[str, dict[str, Any]]:
    return {
        "sender": {"mode": "relay"},
        "relay": {
            "host": "127.0.0.1",
            "port": server.port,
            "security": "starttls",
            "username": "news",
            "password_env": "CHECK_RELAY_PASSWORD",
            **relay,
        },
        "timeouts": {"connect": 2.0, "greeting": 5.0},
    }


@pytest.fixture
def relay(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, monkeypatch: pytest.MonkeyPatch
) -> SmtpServer:
    monkeypatch.setenv("CHECK_RELAY_PASSWORD", PASSWORD)
    return smtp_server("127.0.0.1", starttls_context=tls_server_context(), auth={"news": PASSWORD})


def relay_result(sender: Sender, server: SmtpServer, **relay: Any) -> CheckResult:
    settings = sender.settings(**relay_config(server, **relay))
    return asyncio.run(check_relay_tls(transport_settings(settings), "CHECK_RELAY_PASSWORD"))


def test_relay_tls_with_the_ca_configured_passes_and_logs_in(
    sender: Sender, relay: SmtpServer, ca_file: str
) -> None:
    assert_result(
        relay_result(sender, relay, ca_file=ca_file),
        "pass",
        "certificate verified",
        "AUTH as 'news' accepted",
    )


def test_relay_tls_without_the_ca_fails(sender: Sender, relay: SmtpServer) -> None:
    assert_result(relay_result(sender, relay), "fail", "TLS failed", remedy="[relay] ca_file")


def test_relay_with_a_wrong_password_fails(
    sender: Sender, relay: SmtpServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECK_RELAY_PASSWORD", "not-the-password")
    result = relay_result(sender, relay, ca_file=ca_file)
    assert_result(result, "fail", "AUTH failed", remedy="$CHECK_RELAY_PASSWORD")
    assert "not-the-password" not in result.detail


def test_relay_with_the_password_variable_unset_says_so(
    sender: Sender, relay: SmtpServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHECK_RELAY_PASSWORD")
    result = relay_result(sender, relay, ca_file=ca_file)
    assert_result(result, "fail", "CHECK_RELAY_PASSWORD is not set", remedy="CHECK_RELAY_PASSWORD")
    assert "AUTH failed" not in result.detail


def test_relay_mode_run_reports_the_relay_check(
    sender: Sender, relay: SmtpServer, ca_file: str
) -> None:
    result = sender.cli("check", "--json", **relay_config(relay, ca_file=ca_file))
    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows[f"tls relay 127.0.0.1:{relay.port}"]["status"] == "pass"
    assert result.exit_code == 0


def probe(server: SmtpServer, ca_file: str | None) -> CheckResult:
    return asyncio.run(probe_mx("127.0.0.1", server.port, helo=HELO, ca_file=ca_file, timeout=5.0))


def test_mx_probe_reports_starttls_with_a_verified_certificate(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context())
    assert_result(probe(server, ca_file), "pass", "STARTTLS: TLSv1.", "certificate verified")


def test_mx_probe_warns_about_an_unverifiable_certificate(
    smtp_server: ServerFactory, tls_server_context: ContextFactory
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context())
    assert_result(probe(server, None), "warn", "certificate not verified")


def test_mx_probe_warns_when_starttls_is_not_offered(smtp_server: ServerFactory) -> None:
    assert_result(probe(smtp_server("127.0.0.1"), None), "warn", "does not offer STARTTLS")


def test_mx_probe_resolves_the_host_through_the_configured_dns(
    sender: Sender, smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    """``mx.probe.test`` exists only on the loopback DNS server that [dns] names."""
    sender.zone.add("mx.probe.test", "A", "127.0.0.1")
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context("mx.probe.test"))

    result = sender.cli(
        "check", "--json", "--probe", f"mx.probe.test:{server.port}", sender={"ca_file": ca_file}
    )

    row = {row["check"]: row for row in json.loads(result.output)}[
        f"tls probe mx.probe.test:{server.port}"
    ]
    assert row["status"] == "pass", row
    assert "certificate verified for mx.probe.test" in row["detail"]


def test_mx_probe_of_a_name_the_dns_does_not_know_fails_saying_so(sender: Sender) -> None:
    result = sender.cli("check", "--json", "--probe", "nowhere.probe.test:25")
    row = {row["check"]: row for row in json.loads(result.output)}[
        "tls probe nowhere.probe.test:25"
    ]
    assert row["status"] == "fail" and "no A or AAAA record" in row["detail"], row


def test_mx_probe_of_a_closed_port_fails(sender: Sender) -> None:
    result = sender.cli("check", "--json", "--probe", "127.0.0.1:1")
    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows["tls probe 127.0.0.1:1"]["status"] == "fail"
    assert result.exit_code == 1
