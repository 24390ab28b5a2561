"""The engine's view of traffic shaping: sites rolled up by provider, their limits, and the
backoffs in force (this engine's and, refreshed every tick, the fleet's from the database).

The engine calls ``route`` on each Route (a provider-hosted domain gets the provider's site),
``limits_for`` when it creates a Site, ``observe`` on every transient reply, and ``retune``
when the actions in force change. The decisions are in ``pack`` and ``backoff`` (pure).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from bulkmail.config import Limits, Settings
from bulkmail.delivery.classify import Reply
from bulkmail.delivery.routing import Route
from bulkmail.delivery.sites import Site
from bulkmail.shaping.backoff import (
    Action,
    action_for,
    in_force,
    limits_under,
    match_rule,
    suspended_until,
)
from bulkmail.shaping.pack import Pack, Provider, effective_limits, load_pack, own_keys

__all__ = ["PROVIDER_PREFIX", "Shaper", "own_limits", "provider_site"]

PROVIDER_PREFIX = "provider:"


def own_limits(settings: Settings, domain: str) -> bool:
    """True when ``[limits."domain"]`` sets connections, messages_per_connection or rate
    (a table with only mta_sts or dane leaves the domain on its provider's site)."""
    return bool(own_keys(settings, domain))


def provider_site(route: Route, pack: Pack) -> tuple[Route, Provider | None]:
    """``route`` with the site of the provider hosting all its MX hosts (a "#..." qualifier
    of the TLS policy kept), or unchanged when no provider matches."""
    if route.reply is not None or not route.hosts:
        return route, None
    provider = pack.provider_for([h.name for h in route.hosts])
    if provider is None:
        return route, None
    _, sep, qualifier = route.site.partition("#")
    return dataclasses.replace(route, site=f"{PROVIDER_PREFIX}{provider.name}{sep}{qualifier}"), (
        provider
    )


class Shaper:
    """One per engine: the pack, which provider each site belongs to, the actions in force."""

    def __init__(self, settings: Settings, pack: Pack | None = None) -> None:
        self.settings = settings
        self.pack = pack or load_pack(settings)
        self.providers: dict[str, Provider | None] = {}  # site -> its provider
        self.base: dict[str, Limits] = {}  # site -> limits before any backoff
        self.actions: list[Action] = []  # the fleet's, as last read
        self.mine: list[Action] = []  # started here, maybe not yet read back

    def route(self, route: Route) -> Route:
        """The provider's site for a provider-hosted domain. A domain with its own
        ``[limits."domain"]`` keeps its MX-set site, so its override applies to it alone and
        no other domain's limits depend on which was seen first (its provider's backoff
        rules still apply there)."""
        rolled, provider = provider_site(route, self.pack)
        if provider is not None and own_limits(self.settings, route.domain):
            rolled = route
        self.providers.setdefault(rolled.site, provider)
        return rolled

    def limits_for(self, route: Route, now: float) -> Limits:
        """The limits of the site ``route`` is on, lowered by the throttles in force."""
        base, _ = effective_limits(self.settings, route.domain, self.providers.get(route.site))
        self.base[route.site] = base
        return limits_under(base, self.in_force(), route.site, now)

    def in_force(self) -> list[Action]:
        return [*self.actions, *(a for a in self.mine if a not in self.actions)]

    def adopt(self, fleet: Iterable[Action], now: float) -> None:
        """The fleet's actions as just read; ours that expired are forgotten."""
        self.actions = list(fleet)
        self.mine = [a for a in self.mine if a.lasts(now)]

    def suspended_until(self, site: str, now: float) -> float | None:
        return suspended_until(self.in_force(), site, now)

    def observe(self, site: str, reply: Reply, now: float) -> tuple[Action | None, bool]:
        """The action ``reply`` starts on ``site`` and whether it is new (to be recorded);
        a rule already in force on the site is not started again by the next lane's reply."""
        provider = self.providers.get(site)
        rule = match_rule(self.pack.rules, provider.name if provider else "", reply)
        if rule is None:
            return None, False
        for action in in_force(self.in_force(), site, now):
            if action.rule == rule.name:
                return action, False
        action = action_for(rule, site, now)
        self.mine.append(action)
        return action, True

    def retune(self, site: Site, now: float) -> None:
        """Give ``site`` its limits under the actions in force now (back to the base ones
        when they expired): its pace at once, its slots at the next rebalance."""
        base = self.base.get(site.name)
        if base is None:
            return
        limits = limits_under(base, self.in_force(), site.name, now)
        if limits == site.limits:
            return
        site.limits = limits
        share = min(1.0, len(site.slots) / limits.connections) if site.slots else 1.0
        site.limiter.retune(limits.rate * share if limits.rate else 0.0)


def holds_by_expiry(held: Iterable[tuple[int, float]]) -> dict[float, list[int]]:
    """Rows to hold, grouped by when their suspension ends (one UPDATE per group)."""
    groups: dict[float, list[int]] = {}
    for row_id, until in held:
        groups.setdefault(until, []).append(row_id)
    return groups
