"""The log filter of ``bulkmail serve``: a repeated message is written once with a count."""

from __future__ import annotations

import io
import logging
import sys

from bulkmail.web.guard import Limits, capacity
from bulkmail.web.logs import RepeatFilter, report_pending


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _logger(repeat: RepeatFilter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(repeat)
    logger = logging.getLogger(f"test.serve.logs.{id(repeat)}")
    logger.handlers = [handler]
    logger.propagate = False
    return logger, out


def _accept_failure(logger: logging.Logger, fd: int) -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logger.error(
            "socket.accept() out of system resource\nsocket: <TransportSocket fd=%d>",
            fd,
            exc_info=sys.exc_info(),
        )


def test_a_thousand_identical_errors_write_one_traceback_and_then_a_count() -> None:
    clock = Clock()
    repeat = RepeatFilter(window=60, clock=clock)
    logger, out = _logger(repeat)
    for n in range(1000):
        _accept_failure(logger, 9 + n % 3)  # the socket line varies; the message does not
    written = out.getvalue()
    assert written.count("Traceback") == 1
    assert written.count("socket.accept() out of system resource") == 1

    clock.now += 61
    _accept_failure(logger, 9)
    later = out.getvalue()[len(written) :]
    assert "repeated 999 more times within 60 s" in later
    assert "Traceback" not in later  # the count, not a second copy of the traceback


def test_different_messages_and_exception_types_are_each_written() -> None:
    repeat = RepeatFilter(window=60, clock=Clock())
    logger, out = _logger(repeat)
    logger.warning("closed a slow client")
    logger.warning("connection budget reached")
    logger.error("closed a slow client")  # another level
    _accept_failure(logger, 9)
    try:
        raise ValueError("x")
    except ValueError:
        logger.error("socket.accept() out of system resource", exc_info=True)
    assert out.getvalue().count("\n") >= 5
    assert out.getvalue().count("Traceback") == 2


def test_held_back_counts_are_reported_at_shutdown() -> None:
    repeat = RepeatFilter(window=60, clock=Clock())
    logger, out = _logger(repeat)
    for _ in range(5):
        logger.warning("closed a slow client")
    assert repeat.pending() == [((logger.name, logging.WARNING, "closed a slow client", ""), 4)]
    handler = logging.StreamHandler(io.StringIO())
    web = logging.getLogger("bulkmail.web")
    web.addHandler(handler)
    try:
        report_pending(repeat)
    finally:
        web.removeHandler(handler)
    assert "'closed a slow client' repeated 4 more time(s)" in handler.stream.getvalue()  # type: ignore[attr-defined]


def test_the_connection_budget_leaves_room_for_an_accept_batch_under_the_files_limit() -> None:
    limits = Limits(max_connections=1000, backlog=64)
    assert capacity(limits, 1024) == 1024 - 64 - 4 * 64
    assert capacity(limits, 100_000) == 1000
    assert capacity(limits, 100) == 8  # never none at all
