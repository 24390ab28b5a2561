"""The readiness rules as pure functions: values in, verdicts out, no I/O.

The DNS-facing checks (``dnschecks``, ``dkimcheck``) fetch records and hand them to these
functions, so every rule — what makes a PTR name generic, how a DKIM key record or a DMARC
record is read, when a From domain is aligned, what a blocklist answer means, how to fix an
SPF record — is tested here without a network. Sources: RFC 6376 §3.6.1 (DKIM key records),
RFC 7208 (SPF), RFC 7489 §3.1 and §6.3 (DMARC alignment and records), RFC 5782 (DNSBL),
RFC 8058 (one-click unsubscribe), and REFERENCE.md.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from publicsuffixlist import PublicSuffixList

#: Words that providers' reverse-DNS names use for dynamic or residential addresses.
GENERIC_WORDS = frozenset(
    {
        "adsl",
        "broadband",
        "cable",
        "client",
        "clients",
        "cust",
        "customer",
        "dhcp",
        "dial",
        "dialup",
        "dsl",
        "dyn",
        "dynamic",
        "dynip",
        "pool",
        "ppp",
        "pppoe",
        "residential",
        "unassigned",
        "vdsl",
        "xdsl",
    }
)
RECOMMENDED_RSA_BITS = 2048
MIN_RSA_BITS = 1024
DMARC_POLICIES = ("none", "quarantine", "reject")

_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"\d+")


# -- PTR -------------------------------------------------------------------------------------


def generic_ptr_reason(name: str, ip: str) -> str | None:
    """Why ``name`` looks like an ISP's generic reverse name for ``ip`` (None: it does not).

    Generic: the address's octets appear in it (in order or reversed, decimal or as 8 hex
    digits), or a label carries a word such as "dyn", "pool", "dhcp", "dsl".
    """
    lowered = name.lower().rstrip(".")
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        octets = [int(part) for part in str(address).split(".")]
        numbers = [int(n) for n in _NUMBER.findall(lowered)]
        for run in (octets, octets[::-1]):
            if any(numbers[i : i + 4] == run for i in range(len(numbers) - 3)):
                return f"it contains the address's octets ({ip})"
        if f"{int(address):08x}" in lowered:
            return f"it contains the address in hex ({int(address):08x})"
    else:
        compact = address.exploded.replace(":", "")
        if compact[-8:] in lowered.replace("-", "").replace(".", ""):
            return "it contains the address's digits"
    words = set(_WORD.findall(lowered))
    generic = sorted(words & GENERIC_WORDS)
    if generic:
        return f"it contains {', '.join(repr(w) for w in generic)}"
    return None


# -- DKIM key records ------------------------------------------------------------------------


def parse_tag_list(text: str) -> dict[str, str]:
    """An RFC 6376 §3.2 tag list ("v=DKIM1; k=rsa; p=...") as a dict; ValueError if broken."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"{part.strip()!r} is not tag=value")
        if name in tags:
            raise ValueError(f"tag {name}= appears twice")
        tags[name] = value.strip()
    return tags


@dataclass(frozen=True)
class DkimRecord:
    """A DKIM key record (RFC 6376 §3.6.1). ``public_key`` is ``p=`` without whitespace."""

    version: str | None
    key_type: str
    public_key: str
    text: str

    @property
    def revoked(self) -> bool:
        """An empty ``p=`` means the key was revoked (RFC 6376 §3.6.1)."""
        return self.public_key == ""


def join_txt(strings: Sequence[bytes | str]) -> str:
    """The strings of one TXT record joined without separators (RFC 6376 §3.6.2.2)."""
    return "".join(s.decode("ascii", "replace") if isinstance(s, bytes) else s for s in strings)


def parse_dkim_record(text: str) -> DkimRecord:
    """Read a key record; ValueError for broken syntax, a missing ``p=`` or a wrong ``v=``."""
    tags = parse_tag_list(text)
    if "p" not in tags:
        raise ValueError("no p= tag")
    version = tags.get("v")
    if version is not None and version != "DKIM1":
        raise ValueError(f"v={version} is not v=DKIM1")
    return DkimRecord(version, tags.get("k", "rsa").lower(), "".join(tags["p"].split()), text)


def published_key_bits(record: DkimRecord) -> int | None:
    """The RSA key size of a record's ``p=`` (None for Ed25519); ValueError if unreadable."""
    try:
        raw = base64.b64decode(record.public_key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("p= is not base64") from None
    if record.key_type == "ed25519":
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 p= holds 32 bytes, this one {len(raw)}")
        return None
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError):
        raise ValueError("p= is not an RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        kind = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else type(key).__name__
        raise ValueError(f"p= holds a {kind} key, not RSA")
    return key.key_size


def txt_record_text(name: str, strings: Sequence[str]) -> str:
    """A zone-file line for a TXT record made of ``strings`` (each quoted, ≤ 255 octets)."""
    quoted = " ".join(f'"{s}"' for s in strings)
    return f"{name.rstrip('.')}. IN TXT {quoted}"


# -- SPF -------------------------------------------------------------------------------------


def spf_records(texts: Sequence[str]) -> list[str]:
    """The SPF records among a name's TXT records (RFC 7208 §4.5: "v=spf1" then space or end)."""
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def ip_mechanism(ip: str) -> str:
    return ("ip6:" if ipaddress.ip_address(ip).version == 6 else "ip4:") + ip


def spf_with_ip(record: str, ip: str) -> str:
    """``record`` with the mechanism for ``ip`` added before its ``all`` or ``redirect=``."""
    terms = record.split()
    mechanism = ip_mechanism(ip)
    for i, term in enumerate(terms):
        bare = term.lstrip("+-~?").lower()
        if i and (bare == "all" or bare.startswith("redirect=")):
            return " ".join([*terms[:i], mechanism, *terms[i:]])
    return " ".join([*terms, mechanism])


def spf_risks(record: str) -> list[str]:
    """What in an SPF record weakens it even where it passes (empty: nothing).

    ``+all`` (or a bare ``all``: ``+`` is the default qualifier) authorises every host on the
    internet, so the pass proves nothing; ``?all`` leaves other hosts neutral, so forgeries are
    not refused; ``ptr`` is slow and unreliable and RFC 7208 §5.5 says it SHOULD NOT be used.
    """
    risks = []
    for term in record.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        bare = term.lstrip("+-~?").lower()
        if bare == "all" and qualifier == "+":
            risks.append(f"'{term}' authorises every host on the internet")
        elif bare == "all" and qualifier == "?":
            risks.append(f"'{term}' leaves every other host neutral, so forgeries are not refused")
        elif bare == "ptr" or bare.startswith("ptr:") or bare.startswith("ptr/"):
            risks.append(f"'{term}' is slow and unreliable (RFC 7208 §5.5: SHOULD NOT be used)")
    return risks


def spf_hardened(record: str, ip: str) -> str:
    """``record`` without the terms ``spf_risks`` names: ``ptr`` terms dropped, ``+all`` and
    ``?all`` made ``~all``, and ``ip`` authorised by its own ``ip4:``/``ip6:`` term."""
    terms = record.split()
    kept = [terms[0]]
    for term in terms[1:]:
        bare = term.lstrip("+-~?").lower()
        if bare == "ptr" or bare.startswith(("ptr:", "ptr/")):
            continue
        kept.append("~all" if bare == "all" and not term.startswith(("-", "~")) else term)
    hardened = " ".join(kept)
    if ip_mechanism(ip) in (t.lower() for t in kept):
        return hardened
    return spf_with_ip(hardened, ip)


def spf_record_for(ips: Sequence[str]) -> str:
    """A minimal SPF record authorising exactly ``ips``."""
    return " ".join(["v=spf1", *(ip_mechanism(ip) for ip in ips), "-all"])


# -- DMARC -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DmarcPolicy:
    """The parts of a DMARC record the checks need (RFC 7489 §6.3)."""

    p: str | None
    adkim: str = "r"
    aspf: str = "r"
    text: str = ""


def dmarc_records(texts: Sequence[str]) -> list[str]:
    """The DMARC records among TXT records: those whose first tag is ``v=DMARC1``."""
    return [t for t in texts if re.match(r"\s*v\s*=\s*DMARC1\s*(;|$)", t, re.IGNORECASE)]


def parse_dmarc(text: str) -> DmarcPolicy:
    """Read a DMARC record; ValueError when its syntax is broken."""
    tags = {k.lower(): v for k, v in parse_tag_list(text).items()}
    return DmarcPolicy(
        tags.get("p", "").lower() or None,
        tags.get("adkim", "r").lower(),
        tags.get("aspf", "r").lower(),
        text,
    )


def dmarc_problem(policy: DmarcPolicy) -> str | None:
    """What is wrong with a parsed record for the providers' rules (None: nothing)."""
    if policy.p is None:
        return "no p= tag"
    if policy.p not in DMARC_POLICIES:
        return f"p={policy.p} is not one of {', '.join(DMARC_POLICIES)}"
    return None


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list that ships with the package: no download


def organizational_domain(domain: str) -> str:
    """The registered domain under its public suffix (RFC 7489 §3.2): a.b.example.co.uk →
    example.co.uk. A public suffix itself is its own organisational domain."""
    name = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(name) or name


def aligned(from_domain: str, other: str, mode: str = "r") -> bool:
    """DMARC identifier alignment (RFC 7489 §3.1): strict needs the same name, relaxed the
    same organisational domain."""
    a, b = from_domain.lower().rstrip("."), other.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


# -- blocklists ------------------------------------------------------------------------------


def dnsbl_query_name(ip: str, zone: str) -> str:
    """The name to look up (RFC 5782 §2): reversed octets (IPv6: nibbles) under the zone."""
    reverse = ipaddress.ip_address(ip).reverse_pointer
    bare = reverse.rsplit(".", 2)[0]  # without "in-addr.arpa" / "ip6.arpa"
    return f"{bare}.{zone.strip('.')}"


LISTED = "listed"
QUERY_ERROR = "error"
UNEXPECTED = "unexpected"


def dnsbl_verdict(addresses: Sequence[str]) -> str | None:
    """What the A answers of a DNSBL query mean: None (not listed), ``LISTED``,
    ``QUERY_ERROR`` (127.255.255.x: Spamhaus refuses the query — never "listed") or
    ``UNEXPECTED`` (an answer outside 127/8: a resolver rewriting NXDOMAIN, not a list)."""
    if not addresses:
        return None
    parsed = [ipaddress.ip_address(a) for a in addresses]
    if any(a in ipaddress.ip_network("127.255.255.0/24") for a in parsed):
        return QUERY_ERROR
    if all(a in ipaddress.ip_network("127.0.0.0/8") for a in parsed):
        return LISTED
    return UNEXPECTED


# -- one-click unsubscribe -------------------------------------------------------------------


def unsubscribe_url_problem(url: str) -> str | None:
    """Why the configured unsubscribe URL fails RFC 8058 / the providers (None: it does not)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"{url} is not https (RFC 8058 needs an https URI)"
    host = (parts.hostname or "").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return f"{url} is not reachable from the internet"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback or address.is_private:
        return f"{url} is not reachable from the internet"
    return None
