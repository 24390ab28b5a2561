"""``bulkmail check``: the sender's own domain's MTA-STS (RFC 8461) and TLS-RPT (RFC 8460).

These protect mail *to* the domain (replies, bounces, complaints), and show receivers a domain
that takes TLS seriously. Neither is required to send, so an absent record passes with the
records to publish as the remedy; a published but broken one fails, because an MTA-STS
policy that cannot be fetched or does not cover the domain's own MX hosts makes senders that
enforce it defer mail to the domain.

The policy is fetched as the delivery path fetches recipients' policies (``mtasts.MtaSts``):
through the [dns] resolver, verified against the system CAs plus ``[sender] ca_file``.
"""

from __future__ import annotations

import asyncio
import re

import dns.exception
import dns.flags
import dns.resolver

from bulkmail.delivery.mtasts import FetchError, MtaSts
from bulkmail.delivery.stspolicy import PolicyError, parse_policy, parse_txt
from bulkmail.readiness.lookup import Lookup, LookupFailed
from bulkmail.readiness.results import PASS, CheckResult, failed, inconclusive, passed

__all__ = ["check_dane_resolver", "check_mta_sts", "check_tls_rpt"]

_RUA = re.compile(r"^(mailto:[^@\s,]+@[^\s,]+|https://[^\s,]+)$")


class _SyncLookups:
    """``MtaSts``'s lookups answered by the checker's (blocking) ``Lookup``."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    async def txt(self, name: str) -> tuple[str, tuple[str, ...]]:
        return "ok", tuple(self.lookup.txt(name))

    async def host_addresses(self, host: str) -> tuple[tuple[str, ...], str]:
        try:
            return tuple(self.lookup.addresses(host)), ""
        except LookupFailed as exc:
            return (), str(exc)


def check_mta_sts(
    lookup: Lookup, domain: str, *, ca_file: str | None = None, port: int = 443
) -> CheckResult:
    """The domain's ``_mta-sts`` TXT record and its policy: published, fetchable, covering
    the domain's MX hosts."""
    name = f"_mta-sts.{domain}"
    try:
        records = lookup.txt(name)
    except LookupFailed as exc:
        return inconclusive("mta-sts", domain, f"cannot look up {name} TXT: {exc}", "try again")
    sts = [r for r in records if r.startswith("v=STSv1")]
    if not sts:
        return CheckResult(
            "mta-sts",
            domain,
            PASS,
            "no MTA-STS policy published (optional: it lets senders refuse to deliver to "
            f"{domain} without verified TLS)",
            f'{name} TXT "v=STSv1; id=<date>" and https://mta-sts.{domain}/.well-known/'
            "mta-sts.txt (version: STSv1, mode: testing, mx: <each MX>, max_age: 604800)",
        )
    policy_id = parse_txt(records)
    if policy_id is None:
        return failed(
            "mta-sts",
            domain,
            f"{name} TXT is not one valid record: {'; '.join(sts)[:200]!r}",
            f'exactly one {name} TXT "v=STSv1; id=<1-32 letters or digits>"',
        )
    fetcher = MtaSts(_SyncLookups(lookup), ca_file=ca_file, port=port, timeout=lookup.timeout)
    url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    try:
        policy = parse_policy(asyncio.run(fetcher.fetch(domain)))
    except FetchError as exc:
        return failed(
            "mta-sts",
            domain,
            f"id {policy_id} published but the policy cannot be fetched: {exc}",
            f"serve {url} over HTTPS with a valid certificate for mta-sts.{domain}",
        )
    except PolicyError as exc:
        return failed("mta-sts", domain, f"{url}: {exc}", "fix the policy file (RFC 8461 3.2)")
    try:
        mx = [host for _, host in lookup.mx(domain) if host != "."]
    except LookupFailed as exc:
        return inconclusive("mta-sts", domain, f"cannot look up {domain} MX: {exc}", "try again")
    uncovered = [host for host in mx if not policy.allows(host)]
    summary = f"id {policy_id}, mode {policy.mode}, mx {', '.join(policy.mx) or '-'}, "
    summary += f"max_age {policy.max_age}"
    if uncovered and policy.mode != "none":
        return failed(
            "mta-sts",
            domain,
            f"{summary}: MX {', '.join(uncovered)} not covered, senders enforcing it defer",
            "add an mx: line for each MX host to the policy, then change the TXT id",
        )
    return passed("mta-sts", domain, summary)


def check_tls_rpt(lookup: Lookup, domain: str) -> CheckResult:
    """The domain's TLS-RPT record (``_smtp._tls`` TXT, RFC 8460): where senders report."""
    name = f"_smtp._tls.{domain}"
    try:
        records = [r for r in lookup.txt(name) if r.startswith("v=TLSRPTv1")]
    except LookupFailed as exc:
        return inconclusive("tls-rpt", domain, f"cannot look up {name} TXT: {exc}", "try again")
    remedy = f'{name} TXT "v=TLSRPTv1; rua=mailto:tls-reports@{domain}"'
    if not records:
        return CheckResult(
            "tls-rpt",
            domain,
            PASS,
            "no TLS-RPT record (optional: senders would report TLS failures to you)",
            remedy,
        )
    if len(records) > 1:
        return failed("tls-rpt", domain, f"{len(records)} TLSRPTv1 records: none is used", remedy)
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (f.partition("=") for f in records[0].split(";"))
    )
    rua = [u.strip() for u in fields.get("rua", "").split(",") if u.strip()]
    if not rua or not all(_RUA.match(u) for u in rua):
        return failed("tls-rpt", domain, f"{records[0][:200]!r}: no usable rua", remedy)
    return passed("tls-rpt", domain, f"reports to {', '.join(rua)}")


def check_dane_resolver(lookup: Lookup, probe: str = ".") -> CheckResult:
    """With ``[sender] dane = "on"``: does the [dns] resolver validate DNSSEC? DANE trusts
    only answers with AD set; a resolver that never sets it makes DANE silently do nothing.
    ``probe`` is a signed name (the root by default: every validating resolver trusts it)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = list(lookup.resolver.nameservers)
    resolver.port = lookup.resolver.port
    resolver.timeout = resolver.lifetime = lookup.timeout
    resolver.flags = dns.flags.RD | dns.flags.AD
    where = f"{', '.join(str(n) for n in resolver.nameservers)} port {resolver.port}"
    try:
        answer = resolver.resolve(probe, "DNSKEY", raise_on_no_answer=False)
    except (dns.exception.DNSException, OSError) as exc:
        return inconclusive(
            "dane",
            "resolver",
            f"cannot ask {where} for the DNSKEY of {probe!r}: {exc or type(exc).__name__}",
            "try again; DANE needs a validating resolver in [dns] nameservers",
        )
    if answer.response.flags & dns.flags.AD:
        return passed("dane", "resolver", f"{where} validates DNSSEC (AD set for {probe!r})")
    return failed(
        "dane",
        "resolver",
        f'[sender] dane = "on" but {where} does not validate DNSSEC (no AD for {probe!r}): '
        "every TLSA record would be ignored",
        "[dns] nameservers = a local validating resolver (unbound, BIND, Knot Resolver)",
    )
