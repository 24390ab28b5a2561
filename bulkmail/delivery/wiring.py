"""Wiring the engine to the config: the router (MX or relay), the transport's settings and how
a delivery's TLS is stored. Kept apart from ``engine.py`` so the dispatcher reads as one loop;
``readiness`` uses the same transport settings for its relay check.
"""

from __future__ import annotations

from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.db.stspolicies import CachedPolicy, load_policies, load_policy, save_policy
from bulkmail.delivery.mtasts import MtaSts
from bulkmail.delivery.routing import MxResolver, RelayRouter
from bulkmail.delivery.securing import SecureRouter
from bulkmail.delivery.transport import RelaySettings, TlsState, TransportSettings


def tls_label(tls: TlsState | None) -> str | None:
    """How a delivery's TLS is stored: None (no connection), "none", or "TLSv1.3 verified"."""
    if tls is None:
        return None
    if not tls.used:
        return "none"
    return f"{tls.version or 'TLS'} {'verified' if tls.verified else 'unverified'}"


class DbPolicyStore:
    """The fleet's MTA-STS policy cache in the campaign database (``db.stspolicies``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, domain: str) -> CachedPolicy | None:
        return load_policy(self.db, domain)

    def load_all(self, now: float) -> dict[str, CachedPolicy]:
        return load_policies(self.db, now)

    def save(self, cached: CachedPolicy) -> None:
        save_policy(self.db, cached)


def make_router(
    settings: Settings, db: Database | None = None
) -> MxResolver | RelayRouter | SecureRouter:
    """MX routing (under MTA-STS unless [sender] mta_sts = "off", and DANE if [sender] dane =
    "on"), or in relay mode one route
    to the smart host for every domain (the relay's own TLS rules apply there)."""
    if settings.sender.mode == "relay":
        return RelayRouter(settings.relay.host, settings.relay.port)
    resolver = MxResolver(
        settings.dns.nameservers,
        settings.dns.port,
        settings.dns.timeout,
        static_routes=settings.routes,
    )
    dane = settings.sender.dane == "on"
    per_domain = {
        domain: (limits.mta_sts, limits.dane)
        for domain, limits in settings.limits.items()
        if domain != "default" and (limits.mta_sts or limits.dane)
    }
    sts_anywhere = settings.sender.mta_sts != "off" or any(
        m not in ("", "off") for m, _ in per_domain.values()
    )
    if not sts_anywhere and not dane and not any(d == "on" for _, d in per_domain.values()):
        return resolver
    ca_file = settings.sender.ca_file
    mta_sts = None
    if sts_anywhere:
        mta_sts = MtaSts(
            resolver,
            ca_file=str(settings.path(ca_file)) if ca_file else None,
            port=settings.sender.mta_sts_port,
            store=DbPolicyStore(db) if db is not None else None,
        )
    return SecureRouter(
        resolver,
        mta_sts,
        settings.sender.mta_sts,
        dane=dane,
        port=settings.sender.port,
        per_domain=per_domain,
    )


def transport_settings(settings: Settings) -> TransportSettings:
    """The SMTP transport's settings from the config (the relay password from the environment)."""
    t, r = settings.timeouts, settings.relay
    relay = None
    if settings.sender.mode == "relay":
        relay = RelaySettings(
            host=r.host,
            port=r.port,
            security=r.security,
            username=r.username or None,
            password=settings.relay_password() or None,
            password_env=r.password_env,
            ca_file=str(settings.path(r.ca_file)) if r.ca_file else None,
        )
    return TransportSettings(
        helo=settings.sender.helo,
        port=settings.sender.port,
        tls=settings.sender.tls,
        timeouts=t,
        relay=relay,
        ca_file=str(settings.path(settings.sender.ca_file)) if settings.sender.ca_file else None,
    )
