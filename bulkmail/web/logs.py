"""Logging for ``bulkmail serve`` that stays small when the same failure repeats.

Under a flood of slow clients the event loop reported ``socket.accept() out of system
resource`` with a full traceback for every failed accept: 240 MB of identical tracebacks in
40 s, which fills a disk and buries the one line that matters. :class:`RepeatFilter` lets the
first of a kind of message through, holds back the identical ones that follow within a
window, and lets the next one after the window through with the count it held back (and no
second traceback), so an operator still sees that it happened and how often.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 60.0  # seconds during which identical messages are counted, not written


@dataclass
class _Seen:
    since: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """A handler filter: identical records (same logger, level, first line, exception type)
    are written once per ``window`` seconds, the later one carrying the count held back."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str, str], _Seen] = {}

    @staticmethod
    def key(record: logging.LogRecord) -> tuple[str, int, str, str]:
        """What makes two records "the same": the varying tail of a message (a socket's repr,
        a peer address on later lines) does not count, the exception's type does."""
        first = record.getMessage().split("\n", 1)[0]
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        return record.name, record.levelno, first, exc

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.key(record)
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self.window:
            seen.held += 1
            return False
        self._seen[key] = _Seen(now)
        if len(self._seen) > 1000:  # many distinct messages: forget the stale ones
            self._seen = {k: v for k, v in self._seen.items() if now - v.since < self.window}
        if seen is not None and seen.held:
            _append_count(record, seen.held, self.window)
        return True

    def pending(self) -> list[tuple[tuple[str, int, str, str], int]]:
        """Keys with records held back since they were last written, and how many."""
        return [(key, seen.held) for key, seen in self._seen.items() if seen.held]


def _append_count(record: logging.LogRecord, held: int, window: float) -> None:
    """Say how many identical records were not written, and drop the repeated traceback."""
    record.msg = (
        f"{record.getMessage()}\n(the message above repeated {held} more "
        f"time{'s' if held != 1 else ''} within {window:.0f} s; not written)"
    )
    record.args = None
    record.exc_info = None
    record.exc_text = None


def install(loggers: tuple[str, ...] = ("", "uvicorn")) -> RepeatFilter:
    """Put one RepeatFilter on every handler of ``loggers`` (root and uvicorn's own)."""
    repeat = RepeatFilter()
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(repeat)
    return repeat


def report_pending(repeat: RepeatFilter) -> None:
    """At shutdown: one line per message held back since it was last written."""
    log = logging.getLogger("bulkmail.web")
    for (name, _, first, _), held in repeat.pending():
        log.warning("%s: %r repeated %d more time(s), not written", name or "root", first, held)
