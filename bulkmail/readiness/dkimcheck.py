"""The DKIM check: the published key record against the configured private key, then a real
signature made by our signer and verified by dkimpy through the checker's own resolver.

Comparing the record with the key catches the usual mistakes (no record, a typo in the
selector, a revoked or truncated key, a key rotated on one side only, a record split wrongly
into strings); the sign-and-verify step proves what a receiver will conclude. The remedy for
every record problem is the exact record to publish, split into 255-octet strings.
"""

from __future__ import annotations

import logging

import dkim

from bulkmail.errors import SigningError
from bulkmail.readiness.lookup import Lookup, LookupFailed
from bulkmail.readiness.results import CheckResult, failed, inconclusive, passed, warned
from bulkmail.readiness.rules import (
    MIN_RSA_BITS,
    RECOMMENDED_RSA_BITS,
    DkimRecord,
    parse_dkim_record,
    published_key_bits,
    txt_record_text,
)
from bulkmail.signing import (
    DkimSigner,
    dns_txt_value,
    load_private_key,
    public_key_matches,
    split_txt,
)
from bulkmail.signing.keys import PrivateKey, key_type

_TEST_MESSAGE = (
    "From: bulkmail readiness check <check@{domain}>\r\n"
    "To: postmaster@{domain}\r\n"
    "Subject: bulkmail readiness check\r\n"
    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "Message-ID: <readiness-check@{domain}>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "A message signed and verified by bulkmail check.\r\n"
)


def record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def record_to_publish(domain: str, selector: str, key: PrivateKey) -> str:
    """The zone-file line publishing ``key``'s public half, in strings of ≤ 255 octets."""
    return txt_record_text(record_name(domain, selector), split_txt(dns_txt_value(key)))


def check_dkim(
    lookup: Lookup, domain: str, selector: str, private_key_pem: bytes, *, kind: str = "dkim"
) -> CheckResult:
    """The key record at ``selector._domainkey.domain`` matches the private key and a
    signature made with it verifies. ``private_key_pem`` must load (the caller checked)."""
    key = load_private_key(private_key_pem)
    name = record_name(domain, selector)
    publish = record_to_publish(domain, selector, key)
    record = _fetch_record(lookup, kind, name, publish)
    if isinstance(record, CheckResult):
        return record
    problem = _record_problem(record, key)
    if problem is not None:
        return failed(kind, name, problem, publish)
    bits = published_key_bits(record)
    try:
        refusal = _sign_and_verify(lookup, domain, selector, private_key_pem)
    except LookupFailed as exc:
        return inconclusive(kind, name, f"DNS gave no answer: {exc}")
    if refusal is not None:
        return failed(
            kind,
            name,
            f"the record matches the key, but a test signature did not verify: {refusal}",
            publish,
        )
    size = f", {bits} bits" if bits else ""
    if bits is not None and bits < RECOMMENDED_RSA_BITS:
        return warned(
            kind,
            name,
            f"rsa key{size}: a test signature verifies, but "
            f"{RECOMMENDED_RSA_BITS} bits are recommended",
            f"bulkmail dkim keygen --domain {domain} --selector <new selector> "
            f"--bits {RECOMMENDED_RSA_BITS}, publish it, then switch [dkim] to it",
        )
    return passed(
        kind,
        name,
        f"{record.key_type} key{size}: matches the configured key, and a test signature verifies",
    )


def _fetch_record(lookup: Lookup, kind: str, name: str, publish: str) -> DkimRecord | CheckResult:
    """The one key record at ``name``, parsed; else the result saying what is wrong."""
    try:
        texts = lookup.txt(name)
    except LookupFailed as exc:
        return inconclusive(kind, name, f"DNS gave no answer: {exc}")
    if not texts:
        return failed(kind, name, f"no DKIM key record at {name}", publish)
    if len(texts) > 1:
        return failed(
            kind,
            name,
            f"{name} has {len(texts)} TXT records; publish exactly one",
            f"delete all but: {publish}",
        )
    try:
        return parse_dkim_record(texts[0])
    except ValueError as exc:
        return failed(kind, name, f"the record at {name} is broken: {exc}", publish)


def _record_problem(record: DkimRecord, key: PrivateKey) -> str | None:
    """What makes a parsed record unusable with ``key`` (None: nothing)."""
    if record.revoked:
        return "the key is revoked (empty p=)"
    if record.key_type != key_type(key):
        return f"the record says k={record.key_type}, the configured key is {key_type(key)}"
    try:
        bits = published_key_bits(record)
    except ValueError as exc:
        return f"the published key is unreadable: {exc}"
    if bits is not None and bits < MIN_RSA_BITS:
        return (
            f"the published key has {bits} bits; receivers ignore keys under "
            f"{MIN_RSA_BITS} (RFC 8301)"
        )
    if not public_key_matches(key, record.public_key):
        return "the published key is not the public half of the configured private key"
    return None


class _Collected(logging.Handler):
    """Keeps dkimpy's log lines: they are its only account of why a signature failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO:
            self.lines.append(record.getMessage())


def _sign_and_verify(lookup: Lookup, domain: str, selector: str, pem: bytes) -> str | None:
    """Sign a test message with our signer, verify it with dkimpy; None when it verifies,
    else dkimpy's reason. ``LookupFailed`` from its key lookup propagates."""
    try:
        signer = DkimSigner(pem, domain, selector)
    except SigningError as exc:
        return str(exc)
    signed = signer.sign(_TEST_MESSAGE.format(domain=domain).encode("ascii"))
    logger = logging.Logger("bulkmail.readiness.dkimpy")
    collected = _Collected()
    logger.addHandler(collected)
    try:
        ok = dkim.DKIM(signed, logger=logger, minkey=MIN_RSA_BITS, timeout=lookup.timeout).verify(
            dnsfunc=lookup.dkim_txt
        )
    except dkim.DKIMException as exc:
        return str(exc)
    if ok:
        return None
    return "; ".join(collected.lines) or "dkimpy says the signature is invalid"
