"""What traffic shaping does for a domain, and which sites are held back now.

``explain`` routes the domain as the engine does (MX lookup, TLS policy, provider roll-up),
then says which site it joins, the MX set, each effective limit with the rule or config key
that set it, and the backoffs in force there with their rules and expiry. ``status`` lists the
sites currently suspended or throttled, fleet-wide (from the database). Both return plain
dicts, so the CLI prints them as text or JSON.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.delivery.wiring import make_router
from bulkmail.shaping import store
from bulkmail.shaping.backoff import Action, limits_under, suspended_until
from bulkmail.shaping.pack import effective_limits, load_pack, provider_tls
from bulkmail.shaping.shaper import own_limits, provider_site

__all__ = ["explain", "status", "utc"]


def utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _backoff(action: Action, reply: str, started: float, now: float) -> dict[str, Any]:
    return {
        "site": action.site,
        "rule": action.rule,
        "action": action.kind,
        "rate": action.rate,
        "connections": action.connections,
        "started": utc(started),
        "until": utc(action.until),
        "seconds_left": round(action.until - now),  # negative: over, being undone
        "recovering_until": utc(action.recover_until) if action.recover_until else None,
        "reply": reply,
    }


def explain(settings: Settings, db: Database, domain: str, now: float | None = None) -> dict:
    """The shaping of ``domain``: site, MX set, limits and their sources, backoffs."""
    now = time.time() if now is None else now
    pack = load_pack(settings)
    route = asyncio.run(make_router(settings, db).route(domain))
    rolled, provider = provider_site(route, pack)
    if provider is not None and own_limits(settings, route.domain):
        rolled = route  # its own [limits."domain"] keeps it on its MX-set site (shaper.py)
    limits, origin = effective_limits(settings, rolled.domain, provider)
    tls = provider_tls(provider)
    if settings.sender.mode == "relay":
        limits, origin = (
            settings.limits["default"],
            {k: f"{settings.source} [limits.default] (relay mode: one site)" for k in origin},
        )
        tls = settings.relay.security
        origin["tls"] = f"{settings.source} [relay] security"
    found = [a for a in store.described(db, now) if a[0].site == rolled.site]
    actions = [a for a, _, _ in found]
    now_limits = limits_under(limits, actions, rolled.site, now)
    suspended = suspended_until(actions, rolled.site, now)
    return {
        "domain": rolled.domain,
        "site": rolled.site,
        "provider": provider.name if provider else None,
        "mx": [
            {"host": h.name, "preference": h.preference, "addresses": list(h.addresses)}
            for h in rolled.hosts
        ],
        "route_problem": str(route.reply) if route.reply is not None else None,
        "limits": {
            "connections": {"value": limits.connections, "set_by": origin["connections"]},
            "messages_per_connection": {
                "value": limits.messages_per_connection,
                "set_by": origin["messages_per_connection"],
            },
            "rate": {"value": limits.rate, "set_by": origin["rate"]},
            "tls": {
                "value": tls or settings.sender.tls,
                "set_by": origin["tls"],
            },
        },
        "now": {
            "connections": now_limits.connections,
            "rate": now_limits.rate,
            "suspended_until": utc(suspended) if suspended else None,
        },
        "backoffs": [_backoff(a, reply, started, now) for a, reply, started in found],
    }


def status(db: Database, now: float | None = None) -> list[dict[str, Any]]:
    """Every backoff in force in the fleet, by site."""
    now = time.time() if now is None else now
    return [_backoff(a, reply, started, now) for a, reply, started in store.described(db, now)]


def rate_text(rate: float) -> str:
    """Messages per second as an operator writes them: "unlimited", "2/s", "10/min"."""
    if not rate:
        return "unlimited"
    if rate >= 1:
        return f"{rate:g}/s"
    return f"{rate * 60:g}/min" if rate * 60 >= 1 else f"{rate * 3600:g}/h"
