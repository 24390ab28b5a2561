"""Address validation and normalisation (pure).

An address is stored the way it is delivered: the domain lower-cased and, for an
internationalised domain, in its ASCII (IDNA) form; the local part kept as written (RFC 5321
says only the receiving host may interpret its case). A non-ASCII local part is valid but
needs a server that offers SMTPUTF8 (RFC 6531).

Addresses are *compared* by :func:`address_key`: the local part lower-cased too. Every real
provider treats local parts case-insensitively and bulk senders (listmonk) compare that way,
so ``USER20@GOOD.TEST`` suppressed must stop mail to ``user20@good.test``. The key is computed
here, never by SQL ``lower()``, which folds non-ASCII letters differently on SQLite and
PostgreSQL.

Most lists are plain ASCII, so a strict fast path handles those; anything it does not accept
goes to email-validator (syntax and RFC 5321 length limits, no DNS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")
# Reserved names (RFC 6761) are refused, except "test" (RFC 2606), which demos and tests use.
_RESERVED = tuple(n for n in SPECIAL_USE_DOMAIN_NAMES if n != "test")


@dataclass(frozen=True)
class Address:
    email: str  # local@ascii-domain, as delivered
    domain: str  # ascii, lower case
    smtputf8: bool  # the local part is not ASCII

    @property
    def key(self) -> str:
        """The comparison key (see :func:`address_key`)."""
        return address_key(self.email)


class InvalidAddress(ValueError):
    """The address cannot be delivered to; str() is the reason."""


def normalize_address(raw: str) -> Address:
    """Validate ``raw`` and return its delivery form, or raise InvalidAddress with a reason."""
    text = raw.strip()
    if not text:
        raise InvalidAddress("empty address")
    m = _FAST.fullmatch(text)
    if m and len(m.group(1)) <= 64 and len(text) <= 254:
        domain = m.group(2).lower()
        if not _reserved(domain):
            return Address(f"{m.group(1)}@{domain}", domain, False)
    try:
        info = validate_email(
            text, check_deliverability=False, allow_smtputf8=True, test_environment=True
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    domain = (info.ascii_domain or info.domain).lower()
    local = info.local_part
    if len(local.encode()) > 64:
        raise InvalidAddress("the part before the @-sign is longer than 64 octets (RFC 5321)")
    email = f"{local}@{domain}"
    if len(email.encode()) > 254:
        raise InvalidAddress("address longer than 254 octets (RFC 5321)")
    return Address(email, domain, not local.isascii())


def address_key(email: str) -> str:
    """The form addresses are compared in: local part lower-cased, domain lower-case ASCII.

    ``email`` is normally a delivery form (``Address.email``) already; a stored address whose
    domain is still Unicode is brought to its IDNA form so both spellings share one key.
    """
    local, _, domain = email.strip().rpartition("@")
    domain = domain.rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass
    return f"{local.lower()}@{domain}"


def _reserved(domain: str) -> bool:
    return any(domain == n or domain.endswith("." + n) for n in _RESERVED)
