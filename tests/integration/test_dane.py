"""DANE (RFC 7672) end to end on loopback against a DNSSEC-validating resolver: Debian's
unbound serves a zone signed with BIND's dnssec-signzone (its key the trust anchor) and an
unsigned one; SMTP peers with trustme certificates play the MX hosts and record every MAIL
and DATA, so a refused host is seen to have received nothing."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bulkmail.readiness.lookup import Lookup
from bulkmail.readiness.stscheck import check_dane_resolver
from tests.integration.world import World
from tests.peers.dnssec import Resolver, available
from tests.tools import require

MX_IP, PLAIN_IP = "127.0.0.2", "127.0.0.3"


def leaf_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def spki_sha256(leaf: trustme.LeafCert) -> str:
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def cert_sha256(ca: trustme.CA) -> str:
    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


class Dane:
    """The world's recipient domains: dane.test (signed) and plain.test (unsigned)."""

    def __init__(self, world: World, resolver: Resolver) -> None:
        self.world, self.resolver = world, resolver

    def publish(self, tlsa: str, plain_tlsa: str | None = None) -> None:
        """dane.test (signed) MX mx.dane.test with ``tlsa``; mixed.test (signed) MX
        mx.plain.test; plain.test unsigned, its MX mx.plain.test with ``plain_tlsa``."""
        port = self.world.port
        self.resolver.signed(
            "dane.test",
            ["@ IN MX 10 mx.dane.test.", f"mx IN A {MX_IP}", f"_{port}._tcp.mx IN TLSA {tlsa}"],
        )
        self.resolver.signed("mixed.test", ["@ IN MX 10 mx.plain.test."])
        self.resolver.unsigned(
            "plain.test",
            ["@ IN MX 10 mx.plain.test.", f"mx IN A {PLAIN_IP}"]
            + ([f"_{port}._tcp.mx IN TLSA {plain_tlsa}"] if plain_tlsa else []),
        )
        self.resolver.start()
        self.world.configure(
            "dns", nameservers=[self.resolver.host], port=self.resolver.port, timeout=2.0
        )

    def send(self, *emails: str) -> dict:
        self.world.subscribers(list(emails))
        cid = self.world.campaign()
        self.world.send(cid)
        return self.world.states(cid)


@pytest.fixture
def dane(world: World) -> Iterator[Dane]:
    require(available(), "unbound and BIND's dnssec-signzone (Debian: unbound bind9-utils)")
    world.configure("sender", dane="on", mta_sts="off")
    with Resolver(world.root) as resolver:
        yield Dane(world, resolver)


@pytest.fixture(scope="module")
def leaf(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("mx.dane.test")


def test_a_matching_dane_ee_record_delivers_authenticated_by_dane(
    world: World, dane: Dane, leaf: trustme.LeafCert
) -> None:
    dane.publish(f"3 1 1 {spki_sha256(leaf)}")
    world.server(MX_IP, starttls_context=leaf_context(leaf))
    row = dane.send("x@dane.test")["x@dane.test"]
    assert row.state == "sent", row.last_text
    assert (row.tls_auth, row.tls_authenticated) == ("dane", True)
    assert world.servers[MX_IP].commands == [("MAIL", True), ("DATA", True)]


def test_a_mismatching_dane_record_defers_and_sends_nothing(
    world: World, dane: Dane, leaf: trustme.LeafCert, tls_ca: trustme.CA
) -> None:
    other = tls_ca.issue_cert("mx.dane.test")  # a valid certificate, but not the key in DNS
    dane.publish(f"3 1 1 {spki_sha256(other)}")
    world.server(MX_IP, starttls_context=leaf_context(leaf))
    row = dane.send("x@dane.test")["x@dane.test"]
    assert row.state == "deferred"
    assert row.last_text.startswith("DANE TLSA of mx.dane.test: no TLSA record matches")
    assert world.servers[MX_IP].commands == []


def test_dane_requires_starttls(world: World, dane: Dane, leaf: trustme.LeafCert) -> None:
    dane.publish(f"3 1 1 {spki_sha256(leaf)}")
    world.server(MX_IP)  # no STARTTLS
    row = dane.send("x@dane.test")["x@dane.test"]
    assert row.state == "deferred" and "STARTTLS not offered" in row.last_text
    assert world.servers[MX_IP].commands == []


def test_a_dane_ta_record_for_the_issuing_ca_delivers(
    world: World, dane: Dane, tls_ca: trustme.CA
) -> None:
    issuer = tls_ca.create_child_ca()  # sent in the chain by the server
    dane.publish(f"2 0 1 {cert_sha256(issuer)}")
    world.server(MX_IP, starttls_context=leaf_context(issuer.issue_cert("mx.dane.test")))
    row = dane.send("x@dane.test")["x@dane.test"]
    assert row.state == "sent", row.last_text
    assert row.tls_auth == "dane"


def test_a_dane_ta_chain_for_another_name_defers(
    world: World, dane: Dane, tls_ca: trustme.CA
) -> None:
    issuer = tls_ca.create_child_ca()
    dane.publish(f"2 0 1 {cert_sha256(issuer)}")
    world.server(MX_IP, starttls_context=leaf_context(issuer.issue_cert("other.example")))
    row = dane.send("x@dane.test")["x@dane.test"]
    assert row.state == "deferred" and "does not name mx.dane.test" in row.last_text
    assert world.servers[MX_IP].commands == []


def test_an_unsigned_tlsa_answer_is_ignored(
    world: World, dane: Dane, leaf: trustme.LeafCert, tls_ca: trustme.CA
) -> None:
    other = tls_ca.issue_cert("mx.plain.test")
    dane.publish(f"3 1 1 {spki_sha256(leaf)}", plain_tlsa=f"3 1 1 {spki_sha256(leaf)}")
    world.server(PLAIN_IP, starttls_context=leaf_context(other))  # does not match: no matter
    row = dane.send("y@plain.test")["y@plain.test"]
    assert row.state == "sent", row.last_text
    assert row.tls_auth != "dane"


def test_a_signed_mx_whose_host_has_an_unsigned_tlsa_answer_is_not_dane(
    world: World, dane: Dane, leaf: trustme.LeafCert, tls_ca: trustme.CA
) -> None:
    other = tls_ca.issue_cert("mx.plain.test")
    dane.publish(f"3 1 1 {spki_sha256(leaf)}", plain_tlsa=f"3 1 1 {spki_sha256(leaf)}")
    world.server(PLAIN_IP, starttls_context=leaf_context(other))
    row = dane.send("z@mixed.test")["z@mixed.test"]  # MX validated, its TLSA answer not
    assert row.state == "sent", row.last_text
    assert row.tls_auth != "dane"


def test_dane_off_ignores_tlsa_records(
    world: World, dane: Dane, leaf: trustme.LeafCert, tls_ca: trustme.CA
) -> None:
    world.configure("sender", dane="off")
    dane.publish(f"3 1 1 {spki_sha256(tls_ca.issue_cert('mx.dane.test'))}")  # would not match
    world.server(MX_IP, starttls_context=leaf_context(leaf))
    assert dane.send("x@dane.test")["x@dane.test"].state == "sent"


def test_dane_on_for_one_domain_only(
    world: World, dane: Dane, leaf: trustme.LeafCert, tls_ca: trustme.CA
) -> None:
    world.configure("sender", dane="off")
    world.configure('limits."dane.test"', dane="on")
    dane.publish(f"3 1 1 {spki_sha256(tls_ca.issue_cert('mx.dane.test'))}")  # does not match
    world.server(MX_IP, starttls_context=leaf_context(leaf))
    assert dane.send("x@dane.test")["x@dane.test"].state == "deferred"


def test_check_tells_whether_the_resolver_validates(world: World) -> None:
    require(available(), "unbound and BIND's dnssec-signzone (Debian: unbound bind9-utils)")
    with Resolver(world.root, "127.0.0.32") as resolver:
        resolver.signed("dane.test", ["@ IN MX 10 mx.dane.test."])
        resolver.start()
        result = check_dane_resolver(Lookup([resolver.host], resolver.port), "dane.test")
    assert result.status == "pass" and "validates DNSSEC" in result.detail
    result = check_dane_resolver(Lookup(["127.0.0.1"], world.dns.port), "news.test")
    assert result.status == "fail" and "does not validate" in result.detail
