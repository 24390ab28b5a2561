"""When campaigns go (pure): parsing ``--at`` times and deciding what a due campaign becomes.

A scheduled campaign whose time passed less than ``grace`` ago starts; one that passed longer
ago (the server was down, cron did not run) is marked *missed* and waits for an operator's
``campaigns send``, instead of surprising subscribers days late.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bulkmail.errors import ConfigError, InputError

START, MISSED, WAIT = "start", "missed", "wait"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"schedule.timezone: unknown time zone {name!r}") from None


def parse_when(text: str, timezone: str = "UTC") -> float:
    """UNIX time of ``text``: ISO 8601 with an offset ("2026-12-01T09:00+01:00"), or a local
    time without one ("2026-12-01 09:00"), read in ``timezone``."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"--at {text!r}: not an ISO 8601 time (e.g. 2026-12-01T09:00+01:00 or "
            "2026-12-01 09:00 in the configured timezone)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(timezone))
    return moment.timestamp()


def due_action(scheduled_at: float, now: float, grace: float) -> str:
    """What to do with a scheduled campaign now: START, MISSED, or WAIT (not yet due)."""
    if scheduled_at > now:
        return WAIT
    if now - scheduled_at > grace:
        return MISSED
    return START


def format_time(ts: float | None, timezone: str = "UTC") -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, zone(timezone)).isoformat(timespec="minutes")
