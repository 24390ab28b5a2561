"""DANE for SMTP (RFC 7672) as pure functions: TLSA records and matching a server's chain.

The lookups are the resolver's (``routing.MxResolver.secure_lookup``): a TLSA answer counts
only when the validating resolver set AD, and only under an MX answer that was validated too
(``securing.py``). What is left here is the matching, on DER bytes:

- DANE-EE (usage 3): the server's own certificate (selector 0) or its public key (selector 1)
  matches, exactly (matching type 0) or by SHA-256 (1) / SHA-512 (2). No name, expiry or
  chain check: the DNS vouches for the key (RFC 7672 3.1.1).
- DANE-TA (usage 2): a certificate the server sent in its chain matches; the chain from the
  server's certificate up to it must be signed link by link, the server's certificate must be
  valid now and name the MX host (RFC 7672 3.1.2, 3.2.2).
- PKIX-TA / PKIX-EE (0, 1) are not for SMTP (RFC 7672 3.1.3): such records are unusable; a
  TLSA RRset with no usable record is as if there were none.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["DANE_EE", "DANE_PREFIX", "DANE_TA", "Tlsa", "match_chain", "usable"]

DANE_TA, DANE_EE = 2, 3
DANE_PREFIX = "DANE TLSA of "  # every DANE deferral's text starts so (reports)


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record: certificate usage, selector, matching type and the association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()[:16]}…"


def usable(records: Sequence[Tlsa]) -> tuple[Tlsa, ...]:
    """The records DANE for SMTP can use (usages 2 and 3, known selectors and types)."""
    return tuple(
        r
        for r in records
        if r.usage in (DANE_TA, DANE_EE) and r.selector in (0, 1) and r.mtype in (0, 1, 2)
    )


def _selected(cert: x509.Certificate, der: bytes, selector: int) -> bytes:
    if selector == 0:
        return der
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _digest(data: bytes, mtype: int) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def _matches(record: Tlsa, cert: x509.Certificate, der: bytes) -> bool:
    return _digest(_selected(cert, der, record.selector), record.mtype) == record.data


def _names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [n.lower().rstrip(".") for n in ext.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return [str(cn[0].value).lower().rstrip(".")] if cn else []


def _name_ok(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == host


def match_chain(
    records: Sequence[Tlsa], chain: Sequence[bytes], host: str, now: datetime.datetime | None = None
) -> str | None:
    """None when the server's chain (DER, its own certificate first) satisfies one of the
    usable TLSA ``records`` for MX ``host``; else why not, in a few words."""
    if not chain:
        return "the server sent no certificate"
    certs = [x509.load_der_x509_certificate(der) for der in chain]
    leaf = certs[0]
    for record in usable(records):
        if record.usage == DANE_EE and _matches(record, leaf, chain[0]):
            return None
    name = host.lower().rstrip(".")
    when = now or datetime.datetime.now(datetime.UTC)
    for record in usable(records):
        if record.usage != DANE_TA:
            continue
        for index, (cert, der) in enumerate(zip(certs, chain, strict=True)):
            if not _matches(record, cert, der):
                continue
            if not _signed_up_to(certs, index):
                return "the chain to the DANE-TA certificate does not verify"
            if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
                return "the server's certificate is expired or not yet valid"
            if not any(_name_ok(p, name) for p in _names(leaf)):
                return f"the server's certificate does not name {name}"
            return None
    return "no TLSA record matches the server's certificate chain"


def _signed_up_to(certs: list[x509.Certificate], index: int) -> bool:
    """Each certificate below ``index`` is signed by the next one (the TA itself may be
    self-signed or not: it is trusted because the DNS says so)."""
    try:
        for child, parent in zip(certs[:index], certs[1 : index + 1], strict=True):
            child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
