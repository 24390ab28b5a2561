"""DANE (RFC 7672) matching on certificates made by trustme: DANE-EE by certificate or key,
each matching type; DANE-TA with the chain checked link by link and the MX name; the PKIX
usages unusable for SMTP."""

from __future__ import annotations

import hashlib

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bulkmail.delivery.dane import Tlsa, match_chain, usable


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def chain_of(leaf: trustme.LeafCert) -> list[bytes]:
    return [der(b.bytes()) for b in leaf.cert_chain_pems]


def spki(cert_der: bytes) -> bytes:
    key = x509.load_der_x509_certificate(cert_der).public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


CA = trustme.CA()
INTERMEDIATE = CA.create_child_ca()
LEAF = INTERMEDIATE.issue_cert("mx.example.test")
CHAIN = chain_of(LEAF)  # the leaf, then the intermediate
OTHER = chain_of(CA.issue_cert("mx.example.test"))


def test_dane_ee_matches_the_certificate_or_the_key_by_any_matching_type() -> None:
    leaf = CHAIN[0]
    for record in (
        Tlsa(3, 0, 0, leaf),
        Tlsa(3, 0, 1, hashlib.sha256(leaf).digest()),
        Tlsa(3, 1, 1, hashlib.sha256(spki(leaf)).digest()),
        Tlsa(3, 1, 2, hashlib.sha512(spki(leaf)).digest()),
    ):
        assert match_chain([record], CHAIN, "any.name.at.all") is None, record  # EE: no name
    assert match_chain([Tlsa(3, 1, 1, hashlib.sha256(spki(OTHER[0])).digest())], CHAIN, "x")


def test_dane_ta_needs_the_chain_signed_up_to_the_anchor_and_the_mx_name() -> None:
    anchor = Tlsa(2, 0, 1, hashlib.sha256(CHAIN[1]).digest())
    assert match_chain([anchor], CHAIN, "mx.example.test") is None
    assert "does not name" in (match_chain([anchor], CHAIN, "mx.other.test") or "")
    forged = [OTHER[0], CHAIN[1]]  # a leaf from another CA, with the anchor appended
    assert "does not verify" in (match_chain([anchor], forged, "mx.example.test") or "")


def test_pkix_usages_are_unusable_for_smtp() -> None:
    records = [Tlsa(0, 0, 1, b"x"), Tlsa(1, 1, 1, b"y"), Tlsa(3, 2, 1, b"z"), Tlsa(2, 0, 9, b"")]
    assert usable(records) == ()
    assert usable([Tlsa(3, 1, 1, b"k")]) == (Tlsa(3, 1, 1, b"k"),)


def test_no_certificate_is_a_failure() -> None:
    assert match_chain([Tlsa(3, 0, 0, CHAIN[0])], [], "mx.example.test")
