"""``bulkmail check``: the sending identity from the config, every check run once, a Report.

The identity is what receivers judge: the sending IPs, the EHLO name, the return-path
(MAIL FROM) domain, the From domain (a campaign's, else the DKIM domain's) and the DKIM keys.
Mistakes in the config itself (an IP that is not one, an unreadable key file, no IP at all)
are ``ConfigError``s — exit code 2 — before any lookup is made; everything the network says
is a ``CheckResult``.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.delivery.engine import transport_settings
from bulkmail.errors import ConfigError, SigningError
from bulkmail.readiness import dnschecks, stscheck, tlscheck
from bulkmail.readiness.dkimcheck import check_dkim
from bulkmail.readiness.lookup import Lookup, LookupFailed
from bulkmail.readiness.requirements import Verdict, provider_verdicts, summarise
from bulkmail.readiness.results import CheckResult, exit_code, failed, inconclusive
from bulkmail.signing import load_private_key


@dataclass(frozen=True)
class DkimKey:
    """A configured DKIM key: where it is published and the private key itself."""

    kind: str  # "dkim" or "dkim-ed25519"
    domain: str
    selector: str
    pem: bytes


@dataclass(frozen=True)
class Identity:
    """What the receivers see of us."""

    ips: tuple[str, ...]
    helo: str
    return_path_domain: str
    from_domain: str
    dkim_domain: str
    keys: tuple[DkimKey, ...] = ()


@dataclass
class Report:
    """Every check's result, and the providers' requirements decided from them."""

    results: list[CheckResult]
    requirements: list[Verdict] = field(default_factory=list)
    providers: list[CheckResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exit_code(self.results)


def campaign_from_domain(db: Database, campaign_id: int) -> str:
    """The domain of a campaign's From address (NotFoundError if there is no such campaign)."""
    from bulkmail.campaigns import get_campaign

    _, address = email.utils.parseaddr(get_campaign(db, campaign_id).from_header)
    return address.rpartition("@")[2].lower()


def _ips(settings: Settings, extra: Sequence[str]) -> tuple[str, ...]:
    given = [(f"{settings.source}: check.ips", ip) for ip in settings.check.ips]
    given += [("--ip", ip) for ip in extra]
    out: list[str] = []
    for where, text in given:
        try:
            out.append(str(ipaddress.ip_address(text.strip())))
        except ValueError:
            raise ConfigError(f"{where}: {text!r} is not an IP address") from None
    if not out:
        raise ConfigError(
            f"{settings.source}: check.ips: no sending IP to check; list the "
            "addresses mail leaves from in [check] ips, or pass --ip"
        )
    return tuple(dict.fromkeys(out))


def _key(settings: Settings, kind: str, selector: str, key_file: str) -> DkimKey:
    path = settings.path(key_file)
    where = f"{settings.source}: dkim.{'ed25519_' if kind != 'dkim' else ''}key_file"
    try:
        pem = path.read_bytes()
        load_private_key(pem)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    except SigningError as exc:
        raise ConfigError(f"{where}: {path}: {exc}") from None
    return DkimKey(kind, settings.dkim.domain, selector, pem)


def identity_from_settings(
    settings: Settings, ips: Sequence[str] = (), from_domain: str | None = None
) -> Identity:
    """The sending identity; ConfigError for anything in the config that cannot be checked."""
    d = settings.dkim
    keys = []
    if d.key_file:
        keys.append(_key(settings, "dkim", d.selector, d.key_file))
    if d.ed25519_key_file:
        if not (d.domain and d.ed25519_selector):
            raise ConfigError(
                f"{settings.source}: dkim: ed25519_key_file needs domain and ed25519_selector too"
            )
        keys.append(_key(settings, "dkim-ed25519", d.ed25519_selector, d.ed25519_key_file))
    rp = settings.sender.return_path_domain.lower().rstrip(".")
    return Identity(
        ips=_ips(settings, ips),
        helo=settings.sender.helo.lower().rstrip("."),
        return_path_domain=rp,
        from_domain=(from_domain or d.domain or rp).lower().rstrip("."),
        dkim_domain=d.domain.lower().rstrip("."),
        keys=tuple(keys),
    )


def _dns_results(lookup: Lookup, who: Identity, zones: Sequence[str]) -> list[CheckResult]:
    results = [dnschecks.check_ptr(lookup, ip, who.helo) for ip in who.ips]
    results += [
        dnschecks.check_spf(lookup, who.return_path_domain, ip, helo=who.helo) for ip in who.ips
    ]
    results += [
        dnschecks.check_spf(lookup, who.helo, ip, helo=who.helo, identity="helo") for ip in who.ips
    ]
    results += [check_dkim(lookup, k.domain, k.selector, k.pem, kind=k.kind) for k in who.keys]
    if not any(k.kind == "dkim" for k in who.keys):
        results.append(_no_rsa_key(bool(who.keys)))
    dmarc, policy = dnschecks.check_dmarc(lookup, who.from_domain)
    results.append(dmarc)
    results.append(
        dnschecks.check_alignment(who.from_domain, who.dkim_domain, who.return_path_domain, policy)
    )
    results.append(dnschecks.check_return_path(lookup, who.return_path_domain))
    results.append(dnschecks.check_from_mx(lookup, who.from_domain))
    results += [dnschecks.check_dnsbl(lookup, ip, zone) for ip in who.ips for zone in zones]
    return results


def _no_rsa_key(ed25519: bool) -> CheckResult:
    remedy = (
        "bulkmail dkim keygen --domain <your domain> --selector <s> --out keys, then set "
        "[dkim] domain, selector and key_file"
    )
    if ed25519:
        return failed(
            "dkim",
            "",
            "only an Ed25519 key is configured: receivers that do not "
            "verify Ed25519 see the mail as unsigned (RFC 8463: sign with RSA too)",
            remedy,
        )
    return failed(
        "dkim",
        "",
        "no DKIM key configured: mail would go out unsigned, so campaigns send, worker and "
        "run-due refuse to send (unless [dkim] required = false)",
        remedy,
    )


def _probe_address(lookup: Lookup, host: str, subject: str) -> str | CheckResult:
    """The address to probe ``host`` at, through ``[dns]`` like every other check (an IP
    literal is itself), or the result that says why there is none."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        addresses = lookup.addresses(host)
    except LookupFailed as exc:
        return inconclusive("tls", subject, f"cannot resolve {host}: {exc}", "try again later")
    if not addresses:
        return failed(
            "tls",
            subject,
            f"{host} has no A or AAAA record",
            "check the host name given to --probe",
        )
    return addresses[0]


async def _tls_results(settings: Settings, probe: str | None, lookup: Lookup) -> list[CheckResult]:
    results = []
    if settings.sender.mode == "relay":
        results.append(
            await tlscheck.check_relay_tls(
                transport_settings(settings), settings.relay.password_env
            )
        )
    else:
        results.append(dnschecks.check_tls_policy(settings.sender.tls))
    if probe:
        try:
            host, port = tlscheck.parse_probe(probe, settings.sender.port)
        except ValueError as exc:
            raise ConfigError(f"--probe: {exc}") from None
        ca_file = str(settings.path(settings.sender.ca_file)) if settings.sender.ca_file else None
        address = _probe_address(lookup, host, f"probe {host}:{port}")
        if isinstance(address, CheckResult):
            results.append(address)
            return results
        results.append(
            await tlscheck.probe_mx(
                host,
                port,
                helo=settings.sender.helo,
                ca_file=ca_file,
                timeout=min(settings.timeouts.greeting, tlscheck.TIMEOUT_CAP),
                address=address,
            )
        )
    return results


def run_checks(
    settings: Settings,
    *,
    ips: Sequence[str] = (),
    from_domain: str | None = None,
    probe: str | None = None,
) -> Report:
    """Run every readiness check for the configured sender (plus ``ips``) and summarise."""
    who = identity_from_settings(settings, ips, from_domain)
    lookup = Lookup.from_settings(settings.dns)
    results = _dns_results(lookup, who, settings.check.dnsbl_zones)
    ca_file = str(settings.path(settings.sender.ca_file)) if settings.sender.ca_file else None
    results.append(
        stscheck.check_mta_sts(
            lookup, who.from_domain, ca_file=ca_file, port=settings.sender.mta_sts_port
        )
    )
    results.append(stscheck.check_tls_rpt(lookup, who.from_domain))
    if settings.sender.dane == "on" or any(lim.dane == "on" for lim in settings.limits.values()):
        results.append(stscheck.check_dane_resolver(lookup))
    results += asyncio.run(_tls_results(settings, probe, lookup))
    results.append(dnschecks.check_unsubscribe(settings.unsubscribe.url))
    requirements = summarise(results)
    return Report(results, requirements, provider_verdicts(requirements))
