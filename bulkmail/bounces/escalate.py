"""Soft bounces that add up (issue 13 §5): a mailbox that keeps failing for its own reasons.

A full or inactive mailbox is the recipient's fault but may come back, so one such failure
suppresses nothing. The same address failing so on ``count`` deliveries within ``days`` days
is suppressed, with that reason. Every recorded event counts, whoever recorded it (a DSN read
by ``bounces``, or the engine's own deferrals and bounces at SMTP time), each delivery once.
A policy or spam block, a rate limit, a routing problem never counts: those are about us.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text

from bulkmail.delivery.classify import Reply, classify_reply
from bulkmail.delivery.taxonomy import ADDS_UP

#: The event kinds that can carry a recipient-side soft failure.
_KINDS = ("soft_bounce", "bounced", "deferred")


@dataclass(frozen=True)
class SoftLimit:
    """``count`` deliveries within ``days`` days suppress the address (count 0: never)."""

    count: int = 3
    days: float = 14.0


def adds_up(code: int | None, enhanced: str | None, detail: str) -> bool:
    """Whether one recorded failure is a recipient-side soft one (full or inactive mailbox)."""
    if not code:
        return False
    return classify_reply(Reply(code, detail or "", enhanced)).bounce_class in ADDS_UP


def escalation(s: Any, email: str, now: float, limit: SoftLimit) -> str | None:
    """The suppression reason if ``email`` has reached the limit, else None."""
    return escalations(s, [email], now, limit).get(email)


def escalations(s: Any, emails: Iterable[str], now: float, limit: SoftLimit) -> dict[str, str]:
    """The suppression reason per address of ``emails`` that has reached the limit: the
    engine's recorder asks this once per written batch (one query, whatever its size), for the
    addresses that failed so in that batch, inside the batch's own transaction."""
    wanted = sorted(set(emails))
    if limit.count <= 0 or not wanted:
        return {}
    rows = s.execute(
        text(
            "SELECT email, delivery_id, code, enhanced, text FROM events "
            "WHERE email IN :emails AND created_at >= :since "
            "AND kind IN ('soft_bounce', 'bounced', 'deferred') ORDER BY id DESC"
        ).bindparams(bindparam("emails", expanding=True)),
        {"emails": wanted, "since": now - limit.days * 86400},
    ).all()
    found: dict[str, tuple[set[int], str]] = {}
    for email, delivery_id, code, enhanced, detail in rows:
        if delivery_id is not None and adds_up(code, enhanced, detail or ""):
            deliveries, _ = found.setdefault(email, (set(), _example(code, enhanced, detail)))
            deliveries.add(delivery_id)
    days = f"{limit.days:g}"
    return {
        email: f"soft bounces: {len(ids)} deliveries in {days} days (full or inactive mailbox): "
        f"{example}"
        for email, (ids, example) in found.items()
        if len(ids) >= limit.count
    }


def _example(code: int, enhanced: str | None, detail: str | None) -> str:
    """The reply as a person reads it: an engine event keeps the code apart from the text."""
    detail = detail or ""
    if detail.startswith(str(code)):
        return detail
    return " ".join(x for x in (str(code), enhanced or "", detail) if x)


def from_settings(settings: Any) -> SoftLimit:
    """``[bounces] soft_bounce_limit`` / ``soft_bounce_days``."""
    return SoftLimit(settings.bounces.soft_bounce_limit, settings.bounces.soft_bounce_days)


DEFAULT_SOFT_LIMIT = SoftLimit()
