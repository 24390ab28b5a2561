"""Wiring the engine to the config: the router (MX or relay), the transport's settings and how
a delivery's TLS is stored. Kept apart from ``engine.py`` so the dispatcher reads as one loop;
``readiness`` uses the same transport settings for its relay check.
"""

from __future__ import annotations

from bulkmail.config import Settings
from bulkmail.delivery.routing import MxResolver, RelayRouter
from bulkmail.delivery.transport import RelaySettings, TlsState, TransportSettings


def tls_label(tls: TlsState | None) -> str | None:
    """How a delivery's TLS is stored: None (no connection), "none", or "TLSv1.3 verified"."""
    if tls is None:
        return None
    if not tls.used:
        return "none"
    return f"{tls.version or 'TLS'} {'verified' if tls.verified else 'unverified'}"


def make_router(settings: Settings) -> MxResolver | RelayRouter:
    """MX routing, or in relay mode one route to the smart host for every domain."""
    if settings.sender.mode == "relay":
        return RelayRouter(settings.relay.host, settings.relay.port)
    return MxResolver(
        settings.dns.nameservers,
        settings.dns.port,
        settings.dns.timeout,
        static_routes=settings.routes,
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
