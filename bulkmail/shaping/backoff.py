"""Adaptive backoff as pure functions: which rule a reply matches, the action it starts, and
the limits a site has while actions are in force.

An action is a value with an expiry (wall-clock seconds, so every engine of a fleet reads the
same one from the database); nothing here does I/O or reads a clock, the caller passes ``now``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bulkmail.config import Limits
from bulkmail.delivery.classify import Reply
from bulkmail.shaping.pack import BackoffRule

__all__ = ["Action", "action_for", "in_force", "limits_under", "match_rule", "suspended_until"]


@dataclass(frozen=True)
class Action:
    """One backoff in force on a site until ``until`` (epoch seconds)."""

    site: str
    rule: str
    kind: str  # "suspend" | "throttle"
    until: float
    rate: float | None = None
    connections: int | None = None


def match_rule(rules: Sequence[BackoffRule], provider: str, reply: Reply) -> BackoffRule | None:
    """The first rule for ``provider`` matching ``reply``, else the first generic one.
    Only transient replies (4xx) start a backoff: a 5xx is about the message, not the pace."""
    if not 400 <= reply.code < 500:
        return None
    whole = str(reply)
    specific = [r for r in rules if r.provider and r.provider == provider]
    for rule in [*specific, *(r for r in rules if not r.provider)]:
        if rule.code is not None and rule.code != reply.code:
            continue
        if rule.enhanced is not None and rule.enhanced != (reply.enhanced or ""):
            continue
        if rule.text is not None and not rule.text.search(whole):
            continue
        return rule
    return None


def action_for(rule: BackoffRule, site: str, now: float) -> Action:
    return Action(site, rule.name, rule.action, now + rule.duration, rule.rate, rule.connections)


def in_force(actions: Iterable[Action], site: str, now: float) -> list[Action]:
    """The actions on ``site`` that have not expired."""
    return [a for a in actions if a.site == site and a.until > now]


def suspended_until(actions: Iterable[Action], site: str, now: float) -> float | None:
    """When the site's latest suspension ends, or None when it is not suspended."""
    ends = [a.until for a in in_force(actions, site, now) if a.kind == "suspend"]
    return max(ends) if ends else None


def limits_under(base: Limits, actions: Iterable[Action], site: str, now: float) -> Limits:
    """``base`` lowered by the throttles in force: the lowest rate and connections win
    (a rate of 0 in ``base`` means unlimited, so any throttle's rate is lower)."""
    rate, conns = base.rate, base.connections
    for action in in_force(actions, site, now):
        if action.kind != "throttle":
            continue
        if action.rate is not None:
            rate = action.rate if not rate else min(rate, action.rate)
        if action.connections is not None:
            conns = min(conns, action.connections)
    if (rate, conns) == (base.rate, base.connections):
        return base
    return dataclasses.replace(base, rate=rate, connections=conns)
