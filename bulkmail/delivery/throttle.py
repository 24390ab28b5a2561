"""Rate limits as pure arithmetic: a GCRA limiter with an injected clock.

Mailbox providers throttle senders per destination site; we keep under their limits by
spacing messages. The Generic Cell Rate Algorithm keeps a single number, the theoretical
arrival time (TAT) of the next message, which makes the long-run rate exact (no drift from
refill rounding) and bounds a burst to ``burst`` messages. The limiter never sleeps: it says
how long the caller should wait, so it is deterministic under a fake clock and the caller
decides how to wait (asyncio.sleep, or put the message back in a queue).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from bulkmail.errors import InputError

__all__ = ["RateLimiter", "parse_rate"]


class RateLimiter:
    """At most ``rate`` messages per second in the long run, at most ``burst`` back to back.

    ``rate`` 0 means unlimited. ``reserve()`` books the next slot and returns how long to wait
    before using it; ``delay()`` only looks; ``try_take()`` books only if no wait is needed.
    """

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 0 or rate != rate or rate == float("inf"):
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._tat: float | None = None  # theoretical arrival time of the next message

    def retune(self, rate: float) -> None:
        """Change the rate in place: the pacing state is kept, so a change allows no burst."""
        if rate < 0 or rate != rate or rate == float("inf"):
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        self.rate = float(rate)
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = (self.burst - 1) * self._interval

    def delay(self) -> float:
        """Seconds until the next message may go (0 = now), without booking it."""
        if not self.rate:
            return 0.0
        now = self._clock()
        tat = now if self._tat is None else max(self._tat, now)
        return max(0.0, tat - self._tolerance - now)

    def reserve(self) -> float:
        """Book the next slot; return the seconds to wait before sending in it (0 = now)."""
        if not self.rate:
            return 0.0
        now = self._clock()
        tat = now if self._tat is None else max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    def try_take(self) -> bool:
        """Book a slot if one is free now; False (and nothing booked) otherwise."""
        if self.delay() > 0:
            return False
        self.reserve()
        return True


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate(value: str | int | float) -> float:
    """Messages per second from "10/s", "600/min", "100/h", "5000/day" or a bare number per second.

    0 (unlimited) is allowed. Raises InputError on anything else.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or value != value or value == float("inf"):
            raise InputError(f"invalid rate {value!r}: must be a finite number >= 0")
        return float(value)
    text = str(value).strip().lower()
    match = _RATE.fullmatch(text)
    if match is not None:
        return float(match.group(1)) / _PER[match.group(2)[0]]
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if number < 0 or number == float("inf") or number != number:
        raise InputError(f"invalid rate {value!r}: expected e.g. '10/s', '600/min', '100/h'")
    return number
