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


RECOVERY_STEPS = 4  # a backoff is undone a quarter at a time over its recovery time


@dataclass(frozen=True)
class Action:
    """One backoff in force on a site until ``until`` (epoch seconds), then undone in steps
    until ``recover_until``: a throttle's rate and connections climb back to the site's own
    a quarter of the way at a time; a suspended site resumes on one connection and climbs
    the same way. A matching reply meanwhile starts the rule again, at full strength."""

    site: str
    rule: str
    kind: str  # "suspend" | "throttle"
    until: float
    rate: float | None = None
    connections: int | None = None
    recover_until: float | None = None

    def lasts(self, now: float) -> bool:
        """Still acting at ``now``: in force or recovering."""
        return max(self.until, self.recover_until or 0.0) > now


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
    until = now + rule.duration
    recover = until + rule.recover if rule.recover else None
    return Action(site, rule.name, rule.action, until, rule.rate, rule.connections, recover)


def in_force(actions: Iterable[Action], site: str, now: float) -> list[Action]:
    """The actions on ``site`` that have not expired."""
    return [a for a in actions if a.site == site and a.until > now]


def suspended_until(actions: Iterable[Action], site: str, now: float) -> float | None:
    """When the site's latest suspension ends, or None when it is not suspended."""
    ends = [a.until for a in in_force(actions, site, now) if a.kind == "suspend"]
    return max(ends) if ends else None


def _step(action: Action, now: float) -> float:
    """How far a backoff is undone at ``now``: 0 while in force, then 1/4, 2/4 and 3/4,
    each for a third of its recovery time; 1 when that is over."""
    if now < action.until:
        return 0.0
    if action.recover_until is None or now >= action.recover_until:
        return 1.0
    span = action.recover_until - action.until
    done = int((now - action.until) / span * (RECOVERY_STEPS - 1))
    return (done + 1) / RECOVERY_STEPS


def _eased(action: Action, base: Limits, now: float) -> tuple[float | None, int | None]:
    """The (rate, connections) an action imposes at ``now`` (None: leaves it alone)."""
    step = _step(action, now)
    if step >= 1.0:
        return None, None
    rate, conns = action.rate, action.connections
    if action.kind == "suspend":
        rate, conns = None, 1  # resumes on one connection
    if rate is not None and step:
        # towards the base rate; from an unlimited base, doubling at each step
        rate = rate + (base.rate - rate) * step if base.rate else rate * 2 ** (step * 4)
    if conns is not None and step:
        conns = max(1, round(conns + (base.connections - conns) * step))
    return rate, conns


def limits_under(base: Limits, actions: Iterable[Action], site: str, now: float) -> Limits:
    """``base`` lowered by the throttles in force or recovering: the lowest rate and
    connections win (a rate of 0 in ``base`` means unlimited, so any throttle's is lower).
    A suspension in force changes no limit (the site sends nothing); recovering, it does."""
    rate, conns = base.rate, base.connections
    for action in actions:
        if action.site != site or (action.kind == "suspend" and now < action.until):
            continue
        lowered_rate, lowered_conns = _eased(action, base, now)
        if lowered_rate is not None:
            rate = lowered_rate if not rate else min(rate, lowered_rate)
        if lowered_conns is not None:
            conns = min(conns, lowered_conns)
    if (rate, conns) == (base.rate, base.connections):
        return base
    return dataclasses.replace(base, rate=rate, connections=conns)
