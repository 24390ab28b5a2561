"""The readiness checker's DNS: one dnspython resolver built from ``[dns]``, for every check.

Every record the checker reads comes through ``Lookup``, so a test points the whole checker
at a DNS server on loopback with ``[dns] nameservers``/``port``, and an operator can check
against a chosen resolver. Answers are plain values: NXDOMAIN and NODATA are an empty list
(the record is absent — a finding); a timeout, SERVFAIL or an unreachable server raises
``LookupFailed`` (nothing can be said — the check is ``inconclusive``). No dnspython
exception leaves this module.

Two libraries do their own lookups: pyspf (SPF evaluation) and dkimpy (signature
verification). ``spf_lookups`` swaps pyspf's lookup function for ours while an evaluation
runs (under a lock, restored afterwards) and ``Lookup.dkim_txt`` is the ``dnsfunc`` dkimpy
takes, so they ask the same server with the same timeout.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dns.exception
import dns.rdatatype
import dns.resolver
import spf

from bulkmail.config import DnsSettings
from bulkmail.errors import ConfigError
from bulkmail.readiness.rules import join_txt


class LookupFailed(Exception):
    """A question got no usable answer (timeout, SERVFAIL, no server reachable)."""

    def __init__(self, name: str, rtype: str, reason: str) -> None:
        super().__init__(f"{rtype} {name}: {reason}")
        self.name = name
        self.rtype = rtype
        self.reason = reason


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


class Lookup:
    """Answers questions through one resolver; see the module docstring for the contract."""

    def __init__(
        self, nameservers: Sequence[str] = (), port: int = 53, timeout: float = 5.0
    ) -> None:
        if nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = list(nameservers)
        else:
            try:
                resolver = dns.resolver.Resolver()  # the system's (/etc/resolv.conf)
            except dns.resolver.NoResolverConfiguration:
                raise ConfigError(
                    "dns.nameservers: none set, and the system names no DNS "
                    "server (/etc/resolv.conf)"
                ) from None
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        self.resolver = resolver
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: DnsSettings) -> Lookup:
        return cls(settings.nameservers, settings.port, settings.timeout)

    def records(self, name: str, rtype: str) -> list[Any]:
        """The rdata of ``name``'s ``rtype`` records; [] when the name or the type is absent."""
        try:
            answer = self.resolver.resolve(_absolute(name), rtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.LifetimeTimeout:
            raise LookupFailed(name, rtype, f"no answer within {self.timeout:g} s") from None
        except dns.resolver.NoNameservers:
            raise LookupFailed(name, rtype, "the server failed (SERVFAIL or refused)") from None
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise LookupFailed(name, rtype, str(exc) or type(exc).__name__) from None
        if answer.rrset is None:
            return []
        return list(answer.rrset)

    def txt(self, name: str) -> list[str]:
        """Each TXT record of ``name`` with its strings joined (RFC 6376 §3.6.2.2, RFC 7208)."""
        return [join_txt(r.strings) for r in self.records(name, "TXT")]

    def addresses(self, name: str) -> list[str]:
        """The IPv4 then IPv6 addresses of ``name``."""
        return [r.address for rtype in ("A", "AAAA") for r in self.records(name, rtype)]

    def ptr(self, ip: str) -> list[str]:
        """The PTR names of an address, without the trailing dot."""
        reverse = ipaddress.ip_address(ip).reverse_pointer
        return [r.target.to_text(omit_final_dot=True) for r in self.records(reverse, "PTR")]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) of each MX record; a null MX's exchange is "." (RFC 7505)."""
        return [
            (r.preference, r.exchange.to_text(omit_final_dot=True))
            for r in self.records(name, "MX")
        ]

    def dkim_txt(self, name: bytes | str, timeout: float = 5.0) -> bytes | None:
        """dkimpy's ``dnsfunc``: the first TXT record of ``name`` (strings joined), or None."""
        text = name.decode("ascii") if isinstance(name, bytes) else name
        records = self.txt(text.rstrip("."))
        return records[0].encode("ascii") if records else None

    def spf_dns(
        self, name: str, qtype: str, strict: bool = True, timeout: float = 0.0
    ) -> list[tuple[tuple[str, str], Any]]:
        """pyspf's ``DNSLookup`` contract, answered by this resolver (see ``spf_lookups``)."""
        try:
            rdatas = self.records(name, qtype) if qtype != "SPF" else []
        except LookupFailed as exc:
            raise spf.TempError(f"DNS {exc}") from None
        out: list[tuple[tuple[str, str], Any]] = []
        for rdata in rdatas:
            if qtype in ("A", "AAAA"):
                value: Any = rdata.address
            elif qtype == "MX":
                value = (rdata.preference, rdata.exchange)
            elif qtype == "PTR":
                value = rdata.target.to_text(True)
            elif qtype == "TXT":
                value = rdata.strings
            else:
                continue
            out.append(((name, qtype), value))
        return out


_SPF_LOCK = threading.Lock()


@contextmanager
def spf_lookups(lookup: Lookup) -> Iterator[None]:
    """While inside, pyspf resolves through ``lookup``; its own function is restored after.

    pyspf calls the module-level ``spf.DNSLookup`` for every question, so this is the one
    place that decides which server SPF evaluation asks. The lock keeps two evaluations with
    different resolvers from seeing each other's.
    """
    with _SPF_LOCK:
        original = spf.DNSLookup
        spf.DNSLookup = lookup.spf_dns
        try:
            yield
        finally:
            spf.DNSLookup = original
