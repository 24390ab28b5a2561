"""When to try a deferred delivery again: pure retry arithmetic.

A deferred delivery is retried on a schedule of intervals (the n-th failed attempt waits the
n-th interval; the last one repeats), spread by a little jitter so a burst of deferrals does
not come back as a burst, never sooner than the server asked for, and given up ("expired") once
the next try would fall after the first attempt plus the maximum age (RFC 5321 4.5.4.1: retry
for 4-5 days). Durations in the configuration are written like "30m" or "1h30m"; they are
parsed here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Protocol

from bulkmail.errors import InputError

__all__ = ["DurationError", "format_duration", "next_attempt_at", "parse_duration"]


class DurationError(InputError, ValueError):
    """A duration string cannot be parsed."""


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value: str | int | float) -> float:
    """Seconds from "2s", "30m", "1h", "1d", "1w", "1h30m", "1.5h" or a bare number of seconds.

    Raises DurationError (an InputError and a ValueError) on anything else, negative included.
    """
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}: expected e.g. '30m', '1h30m', '4d'")
    if isinstance(value, int | float):
        if value < 0 or value != value or value == float("inf"):
            raise DurationError(f"invalid duration {value!r}: must be a finite number >= 0")
        return float(value)
    text = str(value).strip().lower()
    if _NUMBER.fullmatch(text):
        return float(text)
    if not text or not _WHOLE.fullmatch(text):
        raise DurationError(
            f"invalid duration {value!r}: expected a number with a unit s, m, h, d or w, "
            "e.g. '30m', '1h30m', '4d'"
        )
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 5400 -> "1h30m", 0 -> "0s"."""
    remaining = round(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def next_attempt_at(
    now: float,
    attempts: int,
    first_attempt_at: float,
    intervals: Sequence[float],
    max_age: float,
    hint: float | None = None,
    jitter: float = 0.1,
    rng: _Uniform = random,
) -> float | None:
    """When to try again after ``attempts`` failed attempts, or None once it is too late.

    The wait is ``intervals[attempts - 1]`` (the last interval repeats), scaled by a random
    factor in [1 - jitter, 1 + jitter], and at least the server's ``hint`` if it gave one.
    None means the delivery has expired: the next try would be later than
    ``first_attempt_at + max_age``.
    """
    if not intervals:
        raise ValueError("intervals must not be empty")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    interval = intervals[min(max(attempts, 1), len(intervals)) - 1]
    delay = interval * (1 + rng.uniform(-jitter, jitter)) if jitter else float(interval)
    if hint is not None and hint > delay:
        delay = hint
    at = now + max(delay, 0.0)
    if at > first_attempt_at + max_age:
        return None
    return at
