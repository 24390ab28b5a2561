"""Keeping ``bulkmail serve`` answering while slow clients hold connections open (slowloris).

uvicorn closes idle keep-alive connections but has no timeout for a request head that
arrives a byte at a time, and accepts connections until the process runs out of file
descriptors. Measured before this module: 1,100 clients trickling header bytes for 40 s were
none of them closed, no real request was answered for 10 s, and every failed ``accept``
wrote a traceback (240 MB). Three bounds fix that:

- **Header timeout.** A connection must deliver a complete request head within
  ``header_timeout`` seconds of connecting, or of its previous response; else it is closed.
  A real client sends its head in one packet, milliseconds after connecting.
- **Connection budget.** At most ``capacity`` connections are open at once, and
  :func:`capacity` keeps that below ``RLIMIT_NOFILE`` minus room for what the event loop can
  accept in one batch (a few ``backlog``\\ s), so ``accept`` never fails for want of
  descriptors. A connection beyond the budget closes the one that has waited longest for its
  request head, which is the slowest client there is, so a real request still gets in; if
  none is waiting (every slot is serving a request), the newcomer gets a 503 and is closed.
- Repeated log messages are written once with a count (:mod:`bulkmail.web.logs`).

The guard hooks three points of uvicorn's h11 protocol (``handle_events``, which builds the
request cycle once a head is complete; ``on_response_complete``; connection made / lost), so
pyproject pins uvicorn below the next minor versions and the slow-client test in
tests/integration/test_serve_slow_clients.py runs against the real server.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("bulkmail.web")

RESERVE = 64  # descriptors kept for the database, log files and the listening socket
SHED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 10\r\ncontent-length: 20\r\nconnection: close\r\n\r\n"
    b"Too many connections"
)


@dataclass(frozen=True)
class Limits:
    """What ``bulkmail serve`` allows a client; ``max_connections`` is an upper bound that
    :func:`capacity` lowers to what the descriptor limit allows."""

    header_timeout: float = 10.0
    max_connections: int = 1000
    backlog: int = 64


def raise_descriptor_limit(wanted: int = 65536) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard one (servers need more than the 1024
    a login shell gets); the soft limit afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def capacity(limits: Limits, descriptors: int) -> int:
    """How many connections may be open at once with ``descriptors`` file descriptors.

    The event loop accepts up to ``backlog`` connections in one go before any of them reaches
    the guard, and may do so again before the guard runs, hence room for four batches."""
    return max(8, min(limits.max_connections, descriptors - RESERVE - 4 * limits.backlog))


class ConnectionGuard:
    """Open connections of one server, and those waiting for a request head, oldest first."""

    def __init__(self, limits: Limits, capacity: int) -> None:
        self.limits = limits
        self.capacity = capacity
        self.open: set[GuardedH11Protocol] = set()
        self.waiting: dict[GuardedH11Protocol, asyncio.TimerHandle] = {}  # insertion-ordered

    def connected(self, conn: GuardedH11Protocol) -> bool:
        """Admit ``conn``, closing the longest-waiting one if over budget; False if refused."""
        self.open.add(conn)
        if len(self.open) > self.capacity:
            victim = next(iter(self.waiting), None)
            if victim is None:
                log.warning(
                    "connection budget (%d) reached with every connection serving a request: "
                    "answered 503",
                    self.capacity,
                )
                self.open.discard(conn)
                conn.transport.write(SHED)
                conn.transport.close()
                return False
            log.warning(
                "connection budget (%d) reached: closed the connection that had waited "
                "longest for its request head",
                self.capacity,
            )
            self._close(victim)
        self.wait_for_head(conn)
        return True

    def wait_for_head(self, conn: GuardedH11Protocol) -> None:
        """Start (or restart) the header timeout of ``conn``, newest last in line."""
        self.head_received(conn)
        loop = asyncio.get_running_loop()
        self.waiting[conn] = loop.call_later(self.limits.header_timeout, self._timed_out, conn)

    def head_received(self, conn: GuardedH11Protocol) -> None:
        timer = self.waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def disconnected(self, conn: GuardedH11Protocol) -> None:
        self.open.discard(conn)
        self.head_received(conn)

    def _timed_out(self, conn: GuardedH11Protocol) -> None:
        if self.waiting.pop(conn, None) is None:
            return
        log.warning(
            "closed a connection that sent no complete request head within %g s",
            self.limits.header_timeout,
        )
        self._close(conn)

    def _close(self, conn: GuardedH11Protocol) -> None:
        self.head_received(conn)
        self.open.discard(conn)
        conn.transport.abort()  # nothing to flush: no answer was started


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, reporting to a :class:`ConnectionGuard` (set by :func:`protocol`)."""

    guard: ConnectionGuard

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.disconnected(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a complete request head made a new request cycle
            self.guard.head_received(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.guard.wait_for_head(self)  # keep-alive: the next head has the same deadline


def protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``http=``, bound to ``guard``."""
    attrs: dict[str, Any] = {"guard": guard}
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), attrs)
