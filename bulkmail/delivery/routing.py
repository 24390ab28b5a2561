"""Where mail for a domain goes: MX routing with dnspython's asyncio resolver.

``MxResolver.route(domain)`` answers with the MX hosts to try, in order, each with its
addresses, plus the *site*: a name for the set of MX hosts, so every domain hosted on the same
MX hosts shares one queue and one set of limits. A domain that cannot be routed gets a Route
whose ``reply`` says why, ready for ``classify_reply``: NXDOMAIN -> 550 5.1.2, null MX ->
556 5.1.10, SERVFAIL / timeout / no usable host -> 451 4.4.3. dnspython's exceptions end here.

RFC 5321 5.1 and RFC 7505 rules: sort by preference, shuffle equal preferences on every call;
no MX records -> the domain's own A/AAAA as one host of preference 0 (never when MX records
exist); an MX host whose addresses cannot be found is skipped; a null MX ("0 .") means the
domain takes no mail (a "." mixed with real MX records is ignored, the real ones are used).

Every lookup (name, type) is cached for its TTL (negative answers for their SOA negative TTL,
SERVFAIL and timeouts for ``failure_ttl``) against the injected clock, and concurrent callers
of the same lookup share one query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.resolver

from bulkmail.delivery.classify import Reply, dns_temporary, no_such_domain, null_mx
from bulkmail.delivery.dane import Tlsa
from bulkmail.errors import ConfigError, DeliveryError

if TYPE_CHECKING:
    from bulkmail.delivery.tlspolicy import Requirement

__all__ = ["MxHost", "MxResolver", "Route"]

MAX_TTL = 86400.0  # never trust a record longer than a day
MAX_NEGATIVE_TTL = 3600.0  # NXDOMAIN / NODATA: at most an hour
MAX_CACHE_ENTRIES = 200_000


@dataclass(frozen=True)
class MxHost:
    """One host to try. ``port`` is set only by a static route; None = the delivery port.
    ``requirement``: what the recipient domain's published policy (MTA-STS) asks of TLS to
    this host (``securing.py``); None: the configured [sender] tls alone."""

    name: str
    preference: int
    addresses: tuple[str, ...]
    port: int | None = None
    requirement: Requirement | None = None


@dataclass(frozen=True)
class Route:
    """The hosts for a domain, best first, and its site. ``reply`` set = no route, use it."""

    domain: str
    hosts: tuple[MxHost, ...]
    site: str
    reply: Reply | None = None


class _Shuffler(Protocol):
    def shuffle(self, x: list[MxHost]) -> None: ...


@dataclass(frozen=True)
class _Lookup:
    """The outcome of one query: "ok" with records, "nodata", "nxdomain" or "tempfail"."""

    status: str
    records: tuple[Any, ...] = ()
    detail: str = ""
    secure: bool = False  # the validating resolver set AD (DNSSEC), for DANE


class MxResolver:
    """Resolves recipient domains to Routes; one per worker, shared by all its tasks."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        port: int = 53,
        timeout: float = 5.0,
        *,
        rng: _Shuffler = random,
        clock: Callable[[], float] = time.monotonic,
        static_routes: Mapping[str, Sequence[str]] | None = None,
        failure_ttl: float = 60.0,
        ipv6: bool = True,
    ) -> None:
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.exception.DNSException as exc:
            raise DeliveryError(f"no DNS resolver configured: {exc}") from exc
        if nameservers:
            self._resolver.nameservers = list(nameservers)
        self._resolver.port = port
        self._resolver.flags = dns.flags.RD | dns.flags.AD  # ask for AD (RFC 6840 5.7)
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._rng = rng
        self._clock = clock
        self._failure_ttl = failure_ttl
        self._rdtypes = ("A", "AAAA") if ipv6 else ("A",)
        self._static = {
            _normalise(domain) or domain: tuple(_parse_static(e) for e in entries)
            for domain, entries in (static_routes or {}).items()
        }
        self._cache: dict[tuple[str, str], tuple[float, _Lookup]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[_Lookup]] = {}

    async def route(self, domain: str) -> Route:
        """The Route for ``domain``. Never raises for DNS trouble: that is in ``reply``."""
        name = _normalise(domain)
        if name is None:
            return Route(domain, (), "", no_such_domain(domain))
        if name.startswith("["):
            return _literal_route(name)
        if name in self._static:
            return await self._static_route(name, self._static[name])
        mx = await self._lookup(name, "MX")
        if mx.status == "nxdomain":
            return Route(name, (), "", no_such_domain(name))
        if mx.status == "tempfail":
            return Route(name, (), "", dns_temporary(f"MX lookup for {name}: {mx.detail}"))
        if mx.status == "nodata":
            return await self._implicit_route(name)
        exchanges = [(pref, host) for pref, host in mx.records if host]
        if not exchanges:
            return Route(name, (), "", null_mx(name))
        return await self._mx_route(name, exchanges)

    async def _mx_route(self, name: str, exchanges: list[tuple[int, str]]) -> Route:
        hostnames = sorted({host for _, host in exchanges})
        found = await asyncio.gather(*(self._addresses(host) for host in hostnames))
        addresses = dict(zip(hostnames, found, strict=True))
        hosts = [
            MxHost(host, pref, addresses[host][0]) for pref, host in exchanges if addresses[host][0]
        ]
        site = ",".join(hostnames)
        if not hosts:
            details = "; ".join(f"{h}: {addresses[h][1]}" for h in hostnames)
            return Route(name, (), site, dns_temporary(f"no usable MX host ({details})"))
        return Route(name, self._order(hosts), site)

    async def _implicit_route(self, name: str) -> Route:
        addresses, detail = await self._addresses(name)
        if addresses:
            return Route(name, (MxHost(name, 0, addresses),), name)
        if detail == "tempfail":
            return Route(name, (), "", dns_temporary(f"address lookup for {name} failed"))
        reply = Reply(550, f"Domain {name} has no MX or address records", "5.1.2")
        return Route(name, (), "", reply)

    async def _static_route(self, name: str, entries: tuple[tuple[str, int | None], ...]) -> Route:
        hosts = []
        for index, (host, port) in enumerate(entries):
            addresses = (host,) if _is_ip(host) else (await self._addresses(host))[0]
            if addresses:
                hosts.append(MxHost(host, index, addresses, port))
        site = ",".join(sorted(_format_static(h, p) for h, p in entries))
        if not hosts:
            reply = dns_temporary(f"no address for the static route of {name}")
            return Route(name, (), site, reply)
        return Route(name, tuple(hosts), site)

    def reshuffle(self, hosts: tuple[MxHost, ...]) -> tuple[MxHost, ...]:
        """The same hosts in a fresh order: called for each new connection, so equal-preference
        hosts share the load even when one Route serves many messages."""
        return self._order(list(hosts))

    def is_static(self, domain: str) -> bool:
        """True when ``domain`` (normalised) has a static route in [routes]."""
        return domain in self._static

    async def secure_lookup(self, name: str, rdtype: str) -> tuple[str, tuple[Any, ...], bool]:
        """(status, records, AD set) of a cached lookup: DANE trusts only validated answers.
        TLSA records come as ``dane.Tlsa``."""
        found = await self._lookup(_normalise(name) or name, rdtype)
        return found.status, found.records, found.secure

    async def txt(self, name: str) -> tuple[str, tuple[str, ...]]:
        """(status, records) of a cached TXT lookup; each record's strings joined."""
        found = await self._lookup(_normalise(name) or name, "TXT")
        return found.status, found.records

    async def host_addresses(self, host: str) -> tuple[tuple[str, ...], str]:
        """The cached addresses of ``host`` (IPv4 first), or ((), why)."""
        return await self._addresses(_normalise(host) or host)

    def _order(self, hosts: list[MxHost]) -> tuple[MxHost, ...]:
        """Sort by preference; shuffle each group of equal preference (RFC 5321 5.1)."""
        ordered: list[MxHost] = []
        for pref in sorted({h.preference for h in hosts}):
            group = [h for h in hosts if h.preference == pref]
            self._rng.shuffle(group)
            ordered.extend(group)
        return tuple(ordered)

    async def _addresses(self, host: str) -> tuple[tuple[str, ...], str]:
        """(addresses, "") or ((), why): IPv4 first, then IPv6; "tempfail" if any lookup did."""
        lookups = await asyncio.gather(*(self._lookup(host, t) for t in self._rdtypes))
        found = (a for lk in lookups if lk.status == "ok" for a in lk.records)
        addresses = tuple(dict.fromkeys(found))
        if addresses:
            return addresses, ""
        if any(lk.status == "tempfail" for lk in lookups):
            return (), "tempfail"
        return (), lookups[0].status

    async def _lookup(self, name: str, rdtype: str) -> _Lookup:
        """One cached query; concurrent callers of the same (name, type) share one query."""
        key = (name, rdtype)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._query(name, rdtype))
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(future)

    def _settle(self, key: tuple[str, str], done: asyncio.Future[_Lookup]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]

    async def _query(self, name: str, rdtype: str) -> _Lookup:
        lookup, ttl = await self._ask(name, rdtype)
        if ttl > 0:
            if len(self._cache) >= MAX_CACHE_ENTRIES:
                del self._cache[next(iter(self._cache))]
            self._cache.pop((name, rdtype), None)
            self._cache[(name, rdtype)] = (self._clock() + ttl, lookup)
        return lookup

    async def _ask(self, name: str, rdtype: str) -> tuple[_Lookup, float]:
        """Query the DNS; map every dnspython outcome to a _Lookup and a cache TTL."""
        try:
            answer = await self._resolver.resolve(
                name + ".", rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return _Lookup("nxdomain"), _nxdomain_ttl(exc)
        except dns.resolver.YXDOMAIN:
            return _Lookup("nxdomain"), self._failure_ttl
        except dns.exception.Timeout:
            return _Lookup("tempfail", (), "timeout"), self._failure_ttl
        except dns.resolver.NoNameservers:
            return _Lookup("tempfail", (), "SERVFAIL"), self._failure_ttl
        except (dns.exception.DNSException, OSError) as exc:
            return _Lookup("tempfail", (), type(exc).__name__), self._failure_ttl
        ttl = float(answer.chaining_result.minimum_ttl)
        if answer.rrset is None:
            return _Lookup("nodata"), min(ttl, MAX_NEGATIVE_TTL)
        if rdtype == "MX":
            records: tuple[Any, ...] = tuple(
                (rd.preference, _host_text(rd.exchange)) for rd in answer.rrset
            )
        elif rdtype == "TXT":
            records = tuple(b"".join(rd.strings).decode("utf-8", "replace") for rd in answer.rrset)
        elif rdtype == "TLSA":
            records = tuple(Tlsa(rd.usage, rd.selector, rd.mtype, rd.cert) for rd in answer.rrset)
        else:
            records = tuple(rd.address for rd in answer.rrset)
        secure = bool(answer.response.flags & dns.flags.AD)
        return _Lookup("ok", records, secure=secure), min(ttl, MAX_TTL)


def _nxdomain_ttl(exc: dns.resolver.NXDOMAIN) -> float:
    """The negative TTL of an NXDOMAIN answer (SOA minimum), capped."""
    try:
        response = next(iter(exc.responses().values()))
        return min(float(response.resolve_chaining().minimum_ttl), MAX_NEGATIVE_TTL)
    except (StopIteration, KeyError, dns.exception.DNSException):
        return 60.0


def _host_text(name: dns.name.Name) -> str:
    """An MX exchange as lowercase text without the final dot; "" for the root (null MX)."""
    if name == dns.name.root:
        return ""
    return name.to_text(omit_final_dot=True).lower()


def _normalise(domain: str) -> str | None:
    """Lowercase ASCII (IDNA) form without a final dot; literals kept; None if invalid."""
    text = domain.strip().rstrip(".").lower()
    if text.startswith("[") and text.endswith("]"):
        literal = text[1:-1].removeprefix("ipv6:")
        return f"[{literal}]" if _is_ip(literal) else None
    if not text:
        return None
    try:
        return dns.name.from_text(text).to_text(omit_final_dot=True).lower()
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None


def _literal_route(name: str) -> Route:
    """An address literal ("[192.0.2.1]") routes straight to that address."""
    address = name[1:-1]
    return Route(name, (MxHost(address, 0, (address,)),), name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _parse_static(entry: str) -> tuple[str, int | None]:
    """ "host", "host:port", "[v6 or host]:port" -> (host, port or None). ConfigError on junk."""
    text = entry.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") or not rest else "?"
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        port = -1
    if not host or (port is not None and not 0 < port < 65536):
        raise ConfigError(
            f"invalid static route {entry!r}: expected host, host:port or [address]:port"
        )
    return (host if _is_ip(host) else host.lower().rstrip(".")), port


def _format_static(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


class RelayRouter:
    """Relay mode: every domain goes to the smart host, one site, no DNS lookups.

    Same interface as MxResolver; the Connector ignores the (empty) host list in relay mode
    and connects to the configured smart host."""

    def __init__(self, host: str, port: int) -> None:
        self.site = f"relay:{host}:{port}"

    async def route(self, domain: str) -> Route:
        name = _normalise(domain) or domain
        return Route(name, (), self.site)

    def reshuffle(self, hosts: tuple[MxHost, ...]) -> tuple[MxHost, ...]:
        return hosts
