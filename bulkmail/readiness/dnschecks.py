"""The DNS checks: reverse DNS, SPF, DMARC and alignment, MX of the sending domains, blocklists.

One function per check and subject; each asks ``Lookup`` for records, hands them to the pure
rules in ``rules``, and returns one ``CheckResult`` whose remedy is the record to publish. A
lookup that gets no answer makes that one result ``inconclusive``; nothing here raises.
SPF is evaluated by pyspf (a maintained RFC 7208 implementation) through our resolver.
"""

from __future__ import annotations

import ipaddress

import spf

from bulkmail.readiness.lookup import Lookup, LookupFailed, spf_lookups
from bulkmail.readiness.results import CheckResult, failed, inconclusive, passed, warned
from bulkmail.readiness.rules import (
    LISTED,
    QUERY_ERROR,
    DmarcPolicy,
    aligned,
    dmarc_problem,
    dmarc_records,
    dnsbl_query_name,
    dnsbl_verdict,
    generic_ptr_reason,
    ip_mechanism,
    organizational_domain,
    parse_dmarc,
    spf_hardened,
    spf_record_for,
    spf_records,
    spf_risks,
    unsubscribe_url_problem,
)


def _address_record(name: str, ip: str) -> str:
    rtype = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
    return f"{name}. IN {rtype} {ip}"


def _unanswered(kind: str, subject: str, exc: LookupFailed) -> CheckResult:
    return inconclusive(
        kind,
        subject,
        f"DNS gave no answer: {exc}",
        "check again later, or point [dns] nameservers at a working resolver",
    )


# -- PTR -------------------------------------------------------------------------------------


def check_ptr(lookup: Lookup, ip: str, helo: str) -> CheckResult:
    """``ip`` has exactly one PTR, whose name resolves back to ``ip``, is not generic, and is
    the EHLO name ``helo``."""
    wanted = helo if "." in helo else "mail.<your domain>"
    set_ptr = (
        f"ask the provider of {ip} to set its PTR to {wanted}, and publish "
        f"{_address_record(wanted, ip)}"
    )
    try:
        names = lookup.ptr(ip)
        if len(names) != 1:
            if not names:
                return failed("ptr", ip, f"{ip} has no PTR record", set_ptr)
            return failed(
                "ptr",
                ip,
                f"{ip} has {len(names)} PTR records ({', '.join(names)}); "
                "receivers expect exactly one",
                f"keep one PTR only: {set_ptr}",
            )
        name = names[0]
        forward = lookup.addresses(name)
    except LookupFailed as exc:
        return _unanswered("ptr", ip, exc)
    wanted_ip = ipaddress.ip_address(ip)
    if not any(ipaddress.ip_address(a) == wanted_ip for a in forward):
        found = ", ".join(forward) or "no address"
        return failed(
            "ptr",
            ip,
            f"PTR {name} does not resolve back to {ip} (it has {found}): not forward-confirmed",
            f"publish {_address_record(name, ip)}",
        )
    reason = generic_ptr_reason(name, ip)
    if reason is not None:
        return failed(
            "ptr",
            ip,
            f"PTR {name} looks generic ({reason}); receivers treat such "
            "names as dynamic or residential",
            set_ptr,
        )
    if name.lower() != helo.lower().rstrip("."):
        return warned(
            "ptr",
            ip,
            f"{ip} → {name} is forward-confirmed, but the EHLO name is {helo}",
            f'[sender] helo = "{name}"',
        )
    return passed("ptr", ip, f"{ip} → {name} → {ip}: forward-confirmed, and the EHLO name")


# -- SPF -------------------------------------------------------------------------------------


def check_spf(
    lookup: Lookup, domain: str, ip: str, *, helo: str, identity: str = "mailfrom"
) -> CheckResult:
    """SPF of ``domain`` for ``ip``: one ``v=spf1`` record, at most 10 lookups, result pass.

    ``identity`` "mailfrom" checks the return-path domain (MAIL FROM bounces@domain);
    "helo" checks the EHLO name itself (RFC 7208 §2.3).
    """
    kind = "spf" if identity == "mailfrom" else "spf-helo"
    subject = f"{domain} {ip}"
    try:
        records = spf_records(lookup.txt(domain))
    except LookupFailed as exc:
        return _unanswered(kind, subject, exc)
    if not records:
        return failed(
            kind,
            subject,
            f"{domain} has no SPF record",
            f'{domain}. IN TXT "{spf_record_for([ip])}"',
        )
    if len(records) > 1:
        return failed(
            kind,
            subject,
            f"{domain} has {len(records)} SPF records: receivers answer permerror (RFC 7208 §4.5)",
            "merge them into one record and delete the others (found: "
            + "; ".join(f'"{r}"' for r in records)
            + ")",
        )
    # pyspf checks the HELO identity when the sender is empty (it uses postmaster@helo).
    sender, ehlo = (f"postmaster@{domain}", helo) if identity == "mailfrom" else ("", domain)
    with spf_lookups(lookup):
        result, explanation = spf.check2(
            i=ip, s=sender, h=ehlo, timeout=lookup.timeout, querytime=0
        )
    return _spf_verdict(kind, subject, domain, ip, records[0], result, explanation)


def _spf_verdict(
    kind: str, subject: str, domain: str, ip: str, record: str, result: str, explanation: str
) -> CheckResult:
    if result == "pass":
        risks = spf_risks(record)
        if risks:  # +all passes every host; ptr SHOULD NOT be used (RFC 7208 §5.5)
            return warned(
                kind,
                subject,
                f"SPF pass for {ip}, but {domain}'s record: " + "; ".join(risks),
                f'{domain}. IN TXT "{spf_hardened(record, ip)}"',
            )
        return passed(kind, subject, f"SPF pass: {domain} authorises {ip}")
    if result == "temperror":
        return inconclusive(kind, subject, f"SPF temperror: {explanation}")
    if result == "permerror":
        if "lookups" in explanation.lower() and "void" not in explanation.lower():
            return failed(
                kind,
                subject,
                f"SPF permerror: {domain}'s record needs more than 10 "
                "DNS lookups (RFC 7208 §4.6.4)",
                "replace include:, a, mx and ptr terms by the ip4:/ip6: ranges they "
                f"stand for until at most 10 remain ({ip} needs {ip_mechanism(ip)})",
            )
        return failed(
            kind,
            subject,
            f"SPF permerror: {explanation}",
            f'fix the record, e.g. {domain}. IN TXT "{spf_record_for([ip])}"',
        )
    return failed(
        kind,
        subject,
        f"SPF {result}: {domain} does not authorise {ip}",
        f'{domain}. IN TXT "{spf_hardened(record, ip)}"',
    )


# -- DMARC and alignment ---------------------------------------------------------------------


def check_dmarc(lookup: Lookup, from_domain: str) -> tuple[CheckResult, DmarcPolicy | None]:
    """The From domain's DMARC record (else its organisational domain's): exactly one, with
    a valid ``p=``. Returns the parsed policy too (for the alignment modes)."""
    org = organizational_domain(from_domain)
    remedy = f'_dmarc.{from_domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@{org}"'
    records: list[str] = []
    try:
        for where in dict.fromkeys([from_domain, org]):
            records = dmarc_records(lookup.txt(f"_dmarc.{where}"))
            if records:
                break
    except LookupFailed as exc:
        return _unanswered("dmarc", from_domain, exc), None
    if not records:
        also = f" nor _dmarc.{org}" if org != from_domain else ""
        return failed(
            "dmarc", from_domain, f"no DMARC record at _dmarc.{from_domain}{also}", remedy
        ), None
    if len(records) > 1:
        return failed(
            "dmarc",
            from_domain,
            f"_dmarc.{where} has {len(records)} DMARC records: "
            "receivers apply none of them (RFC 7489 §6.6.3)",
            f"delete all but one; one record: {remedy}",
        ), None
    try:
        policy = parse_dmarc(records[0])
    except ValueError as exc:
        return failed("dmarc", from_domain, f"_dmarc.{where}: broken record: {exc}", remedy), None
    problem = dmarc_problem(policy)
    if problem is not None:
        return failed("dmarc", from_domain, f"_dmarc.{where}: {problem}", remedy), None
    inherited = " (the organisational domain's)" if where != from_domain else ""
    return passed("dmarc", from_domain, f"p={policy.p} at _dmarc.{where}{inherited}"), policy


def check_alignment(
    from_domain: str, dkim_domain: str, return_path_domain: str, policy: DmarcPolicy | None
) -> CheckResult:
    """The From domain aligned (RFC 7489 §3.1) with the DKIM d= or the return-path domain."""
    dkim_mode = policy.adkim if policy else "r"
    spf_mode = policy.aspf if policy else "r"
    found = []
    if dkim_domain and aligned(from_domain, dkim_domain, dkim_mode):
        found.append(f"DKIM d={dkim_domain}")
    if aligned(from_domain, return_path_domain, spf_mode):
        found.append(f"return path {return_path_domain}")
    if found:
        return passed(
            "alignment", from_domain, f"From {from_domain} aligned with {' and '.join(found)}"
        )
    org = organizational_domain(from_domain)
    return failed(
        "alignment",
        from_domain,
        f"From {from_domain} is aligned with neither DKIM d={dkim_domain or '(none)'} "
        f"nor the return path {return_path_domain}",
        f'[dkim] domain = "{org}" (and publish its key), or [sender] '
        f'return_path_domain = "bounces.{org}"',
    )


# -- MX of the sending domains ---------------------------------------------------------------


def _receiving(lookup: Lookup, domain: str) -> tuple[list[tuple[int, str]], list[str], bool]:
    """(MX records, addresses when there is no MX, whether it is a null MX) of ``domain``;
    LookupFailed when DNS does not answer. Both MX checks judge these same facts."""
    mx = lookup.mx(domain)
    addresses = [] if mx else lookup.addresses(domain)
    return mx, addresses, any(host == "." for _, host in mx)


def check_return_path(lookup: Lookup, domain: str) -> CheckResult:
    """The return-path domain accepts bounces: an MX (or an address), and no null MX."""
    try:
        mx, addresses, null = _receiving(lookup, domain)
    except LookupFailed as exc:
        return _unanswered("return-path", domain, exc)
    publish = f"{domain}. IN MX 10 <the host of your bounce mailbox>."
    if null:
        return failed(
            "return-path",
            domain,
            f"{domain} has a null MX (RFC 7505): bounces to it "
            "are refused, so bounces are never seen",
            f"remove the null MX; {publish}",
        )
    if mx:
        return passed("return-path", domain, f"bounces go to {_hosts(mx)}")
    if addresses:
        return passed(
            "return-path", domain, f"no MX; bounces go to its address {addresses[0]} (implicit MX)"
        )
    return failed(
        "return-path",
        domain,
        f"{domain} has no MX and no address: bounces cannot be delivered",
        publish,
    )


def check_from_mx(lookup: Lookup, domain: str) -> CheckResult:
    """The From domain receives mail (replies, and providers check it exists): an MX."""
    try:
        mx, addresses, null = _receiving(lookup, domain)
    except LookupFailed as exc:
        return _unanswered("from-mx", domain, exc)
    publish = f"{domain}. IN MX 10 <your mail host>."
    if null:
        return failed(
            "from-mx",
            domain,
            f"{domain} has a null MX: it declares it receives no "
            "mail, and receivers refuse mail From it",
            f"remove the null MX; {publish}",
        )
    if mx:
        return passed("from-mx", domain, f"MX {_hosts(mx)}")
    if addresses:
        return warned(
            "from-mx", domain, f"{domain} has no MX, only an address (implicit MX)", publish
        )
    return failed("from-mx", domain, f"{domain} has no MX: replies cannot reach it", publish)


def _hosts(mx: list[tuple[int, str]]) -> str:
    return ", ".join(f"{host} ({pref})" for pref, host in sorted(mx))


# -- blocklists ------------------------------------------------------------------------------


def check_dnsbl(lookup: Lookup, ip: str, zone: str) -> CheckResult:
    """``ip`` against one DNSBL zone (RFC 5782): 127/8 answers are listings, 127.255.255.x
    are the list refusing the query (inconclusive), anything else is a resolver's lie."""
    subject = f"{zone} {ip}"
    name = dnsbl_query_name(ip, zone)
    try:
        answers = [r.address for r in lookup.records(name, "A")]
    except LookupFailed as exc:
        return _unanswered("dnsbl", subject, exc)
    verdict = dnsbl_verdict(answers)
    if verdict is None:
        return passed("dnsbl", subject, f"{ip} is not listed on {zone}")
    shown = ", ".join(answers)
    if verdict == QUERY_ERROR:
        return inconclusive(
            "dnsbl",
            subject,
            f"{zone} refused the query ({shown}): a public "
            "resolver, over quota, or a typo - not a listing",
            "query through your own resolver (point [dns] nameservers at it) "
            "or use the list's registered query service",
        )
    if verdict != LISTED:
        return inconclusive(
            "dnsbl",
            subject,
            f"{zone} answered {shown}, outside 127.0.0.0/8: the resolver rewrites NXDOMAIN",
            "use a resolver that does not",
        )
    try:
        reasons = lookup.txt(name)
    except LookupFailed:
        reasons = []
    reason = f": {reasons[0]}" if reasons else ""
    return failed(
        "dnsbl",
        subject,
        f"{ip} is listed on {zone} ({shown}){reason}",
        f"find and fix the cause, then request removal from {zone} (look up {ip} "
        "on the list's website)",
    )


# -- settings that providers check -----------------------------------------------------------


def check_unsubscribe(url: str) -> CheckResult:
    """The one-click unsubscribe URL (RFC 8058) is https and reachable from the internet."""
    problem = unsubscribe_url_problem(url)
    if problem is not None:
        return failed(
            "unsubscribe",
            "",
            problem,
            '[unsubscribe] url = "https://<your public host>/unsubscribe" (serve it '
            "with bulkmail's unsubscribe endpoint)",
        )
    return passed(
        "unsubscribe",
        "",
        f"List-Unsubscribe: <{url}/…> with "
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click, both DKIM-signed",
    )


def check_tls_policy(policy: str) -> CheckResult:
    """MX mode: the transport uses STARTTLS unless the policy turned it off."""
    if policy == "off":
        return failed(
            "tls",
            "policy",
            'STARTTLS is off ([sender] tls = "off"): Gmail requires TLS for transmission',
            '[sender] tls = "opportunistic"',
        )
    return passed(
        "tls",
        "policy",
        f'STARTTLS whenever an MX offers it ([sender] tls = "{policy}"); --probe HOST tests one MX',
    )
