"""Our DKIM signatures verify outside our own code: Perl Mail::DKIM and dkimpy, keys from real DNS.

The public keys are published in a DNS server on loopback (``bulkmail.peers.dns``), the 2048-bit
RSA record split into several TXT strings exactly as an operator would publish it. Mail::DKIM
1.20230212 (Debian bookworm) implements rsa-sha256 only (no Ed25519 code, with or without
CryptX), so Ed25519 (RFC 8463) is checked by mailauth (Node, npm; installed by
scripts/install-test-peers.sh) and dkimpy; RSA by all three. A missing verifier fails in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dkim
import dns.exception
import dns.resolver
import pytest

from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.signing import (
    DkimSigner,
    dns_txt_value,
    generate_private_key,
    load_private_key,
    sign_all,
    split_txt,
)
from tests.tools import require

DOMAIN = "example.com"
KINDS = {"rsa2048": ("rsa", 2048), "rsa1024": ("rsa", 1024), "ed25519": ("ed25519", 0)}

MESSAGE = (
    b"From: News <news@example.com>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: =?utf-8?q?Neuigkeiten_f=C3=BCr_Sie?=\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <1.abc@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.com/u/tok>,\r\n <mailto:unsub@example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hello reader,  \r\n"
    b"\r\n"
    b"this\tis the news.\r\n"
)

PERL_VERIFIER = r"""
use strict;
use warnings;
use Net::DNS::Resolver;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;

my $port = shift @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ["127.0.0.1"], port => $port, recurse => 0,
    udp_timeout => 5, tcp_timeout => 5, retry => 1));
my $verifier = Mail::DKIM::Verifier->new();
binmode STDIN;
local $/;
my $message = <STDIN>;
$verifier->PRINT($message);
$verifier->CLOSE;
foreach my $sig ($verifier->signatures) {
    printf "%s %s %s %s\n", $sig->algorithm, $sig->selector, $sig->result,
        ($sig->result_detail // "");
}
"""


def _perl_has_mail_dkim() -> bool:
    if shutil.which("perl") is None:
        return False
    probe = subprocess.run(
        ["perl", "-MMail::DKIM::Verifier", "-MNet::DNS::Resolver", "-e", "1"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    return {kind: generate_private_key(alg, bits or 2048) for kind, (alg, bits) in KINDS.items()}


@pytest.fixture
def dkim_dns(pems, dns_zone: Zone, dns_server: DnsServer) -> DnsServer:
    """The shared test DNS server, publishing sel-<kind>._domainkey.example.com for every key."""
    for kind, pem in pems.items():
        record = dns_txt_value(load_private_key(pem))
        dns_zone.add(f"sel-{kind}._domainkey.{DOMAIN}", "TXT", split_txt(record))
    return dns_server


@pytest.fixture
def perl_verify(dkim_dns: DnsServer):
    """Run Mail::DKIM on a message: one (algorithm, selector, result, detail) per signature."""
    if not _perl_has_mail_dkim():
        require(False, "Perl Mail::DKIM and Net::DNS (libmail-dkim-perl)")

    def run(message: bytes) -> list[tuple[str, str, str, str]]:
        done = subprocess.run(
            ["perl", "-e", PERL_VERIFIER, str(dkim_dns.port)],
            input=message,
            capture_output=True,
            timeout=60,
            check=True,
        )
        rows = []
        for line in done.stdout.decode().splitlines():
            algorithm, selector, result, *detail = line.split(" ", 3)
            rows.append((algorithm, selector, result, " ".join(detail)))
        return rows

    return run


#: Where scripts/install-test-peers.sh installs mailauth (npm); BULKMAIL_MAILAUTH_DIR overrides.
MAILAUTH_DIR = Path(os.environ.get("BULKMAIL_MAILAUTH_DIR", "/opt/bulkmail-test-peers/mailauth"))
MAILAUTH_SCRIPT = Path(__file__).resolve().parents[1] / "peers" / "dkim_verify.js"


@pytest.fixture
def mailauth_verify(dkim_dns: DnsServer):
    """Run mailauth on a message: one (algorithm, selector, result, comment) per signature."""
    modules = MAILAUTH_DIR / "node_modules"
    require(
        shutil.which("node") is not None and (modules / "mailauth" / "package.json").is_file(),
        f"mailauth (Node.js and npm package mailauth in {MAILAUTH_DIR})",
    )

    def run(message: bytes) -> list[tuple[str, str, str, str]]:
        done = subprocess.run(
            ["node", str(MAILAUTH_SCRIPT), str(dkim_dns.port)],
            input=message,
            capture_output=True,
            timeout=60,
            check=True,
            env={**os.environ, "NODE_PATH": str(modules)},
        )
        rows = []
        for line in done.stdout.decode().splitlines():
            algorithm, selector, result, *comment = line.split(" ", 3)
            rows.append((algorithm, selector, result, " ".join(comment)))
        return rows

    return run


def signer(pems, kind: str) -> DkimSigner:
    return DkimSigner(pems[kind], DOMAIN, f"sel-{kind}")


def dnsfunc_via(resolver: dns.resolver.Resolver):
    """A dkimpy dnsfunc that asks the test DNS server through dnspython."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(answer[0].strings)

    return dnsfunc


def test_published_rsa2048_record_is_split_into_several_strings(dkim_dns, dns_resolver):
    answer = dns_resolver.resolve(f"sel-rsa2048._domainkey.{DOMAIN}", "TXT", lifetime=5)
    strings = answer[0].strings
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert b"".join(strings).startswith(b"v=DKIM1; k=rsa; p=")


@pytest.mark.parametrize("kind", ["rsa2048", "rsa1024"])
def test_mail_dkim_verifies_rsa_signature_with_key_from_dns(pems, perl_verify, dkim_dns, kind):
    rows = perl_verify(signer(pems, kind).sign(MESSAGE))
    assert [row[:3] for row in rows] == [("rsa-sha256", f"sel-{kind}", "pass")]
    assert (f"sel-{kind}._domainkey.{DOMAIN}", "TXT") in dkim_dns.queries


def test_mail_dkim_agrees_on_relaxed_canonicalisation_of_odd_whitespace(pems, perl_verify):
    msg = (
        b"From:News\t<news@example.com>   \r\n"
        b"To: a@example.org,\r\n   b@example.org,\r\n\tc@example.org\r\n"
        b"Subject:   lots    of\t\tspace   \r\n"
        b"DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"\r\n  indented \t line\t\r\n\r\n\t\r\nlast  line   \r\n \r\n\r\n"
    )
    signed = signer(pems, "rsa2048").sign(msg)
    assert perl_verify(signed)[0][2] == "pass"
    refolded = signed.replace(b"lots    of", b"lots\r\n of").replace(b"last  line", b"last line")
    assert perl_verify(refolded)[0][2] == "pass"


def test_mail_dkim_fails_an_altered_message(pems, perl_verify):
    signed = signer(pems, "rsa2048").sign(MESSAGE)
    assert perl_verify(signed.replace(b"the news", b"the nevs"))[0][2] == "fail"
    assert perl_verify(signed.replace(b"Date: Mon", b"Date: Tue"))[0][2] == "fail"
    added = b"Subject: something else\r\n" + signed
    assert perl_verify(added)[0][2] == "fail"


def test_mail_dkim_accepts_rsa_next_to_ed25519(pems, perl_verify):
    """Both signatures together: RSA passes; this Mail::DKIM reports Ed25519 unsupported
    (mailauth checks it below), and one that knows it must pass it."""
    signed = sign_all([signer(pems, "rsa2048"), signer(pems, "ed25519")], MESSAGE)
    rows = {row[0]: row[2:] for row in perl_verify(signed)}
    assert set(rows) == {"rsa-sha256", "ed25519-sha256"}
    assert rows["rsa-sha256"][0] == "pass", rows
    result, detail = rows["ed25519-sha256"]
    assert result == "pass" or detail == "invalid (unsupported algorithm ed25519-sha256)", rows


@pytest.mark.parametrize("kind", list(KINDS))
def test_mailauth_verifies_each_signature_with_key_from_dns(pems, mailauth_verify, kind):
    rows = mailauth_verify(signer(pems, kind).sign(MESSAGE))
    algorithm = "ed25519-sha256" if kind == "ed25519" else "rsa-sha256"
    assert [row[:3] for row in rows] == [(algorithm, f"sel-{kind}", "pass")]


@pytest.mark.parametrize("kind", ["ed25519", "rsa2048"])
def test_mailauth_does_not_pass_an_altered_message(pems, mailauth_verify, kind):
    signed = signer(pems, kind).sign(MESSAGE)
    for altered in (
        signed.replace(b"the news", b"the nevs"),  # body
        signed.replace(b"Date: Mon", b"Date: Tue"),  # a signed header
    ):
        [(_, _, result, comment)] = mailauth_verify(altered)
        assert result in ("fail", "neutral"), comment


def test_mailauth_passes_both_signatures_of_sign_all(pems, mailauth_verify):
    signed = sign_all([signer(pems, "rsa2048"), signer(pems, "ed25519")], MESSAGE)
    rows = {row[0]: row[2] for row in mailauth_verify(signed)}
    assert rows == {"rsa-sha256": "pass", "ed25519-sha256": "pass"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_dkimpy_verifies_with_key_from_dns(pems, dkim_dns, dns_resolver, kind):
    dnsfunc = dnsfunc_via(dns_resolver)
    signed = signer(pems, kind).sign(MESSAGE)
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert not dkim.verify(signed.replace(b"the news", b"the nevs"), dnsfunc=dnsfunc)


def test_dkimpy_verifies_both_signatures_of_sign_all(pems, dkim_dns, dns_resolver):
    dnsfunc = dnsfunc_via(dns_resolver)
    signed = sign_all([signer(pems, "rsa2048"), signer(pems, "ed25519")], MESSAGE)
    assert dkim.DKIM(signed).verify(idx=0, dnsfunc=dnsfunc)
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=dnsfunc)


def test_unpublished_selector_does_not_verify(pems, dkim_dns, dns_resolver):
    signed = DkimSigner(pems["rsa2048"], DOMAIN, "missing").sign(MESSAGE)
    assert not dkim.verify(signed, dnsfunc=dnsfunc_via(dns_resolver))
    assert ("missing._domainkey.example.com", "TXT") in dkim_dns.queries


def _composed_newsletters(count: int):
    """Real campaign messages (bundled newsletter, personalised), as the engine builds them."""
    from bulkmail.compose import CampaignInfo, Composer, ComposeSettings, Recipient

    campaign = CampaignInfo(
        3, "Notes", "Hello {{ subscriber.name }}", "News <news@example.com>", 2, "Readers",
        "newsletter",
    )  # fmt: skip
    settings = ComposeSettings(
        b"verify-secret-0123456789abcdef", "https://example.com/u/", "unsub@example.com",
        "bounces.example.com", "example.com",
    )  # fmt: skip
    composer = Composer(campaign, settings)
    people = [
        Recipient(n, f"r{n}@example.org", f"Reader  {n} ", {"city": "Oslo"}) for n in range(count)
    ]
    return [composer.compose(p) for p in people]


def test_composed_messages_signed_with_the_composers_body_hash_verify_everywhere(
    pems, perl_verify, mailauth_verify, dkim_dns, dns_resolver
):
    """The per-campaign body hash path (sign_composed) against all three verifiers."""
    from bulkmail.delivery.pipeline import sign_composed

    dnsfunc = dnsfunc_via(dns_resolver)
    for composed in _composed_newsletters(3):
        signed = sign_composed([signer(pems, "rsa2048"), signer(pems, "ed25519")], composed)
        assert dkim.DKIM(signed).verify(idx=0, dnsfunc=dnsfunc)
        assert dkim.DKIM(signed).verify(idx=1, dnsfunc=dnsfunc)
        assert {row[0]: row[2] for row in mailauth_verify(signed)} == {
            "rsa-sha256": "pass",
            "ed25519-sha256": "pass",
        }
        assert {row[0]: row[2] for row in perl_verify(signed)}["rsa-sha256"] == "pass"
