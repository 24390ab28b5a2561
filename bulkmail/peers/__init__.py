"""Local servers for the demo, the tests and the benchmark.

bulkmail talks to DNS and SMTP servers it does not control. To test it against real protocol
implementations rather than mocks, this package runs small scripted servers in background
threads: an authoritative DNS server (``peers.dns``, on dnslib) and a scripted SMTP server
(``peers.smtp``, on aiosmtpd). Each one listens on a loopback address only (127.0.0.0/8 or ::1),
starts in milliseconds and stops by itself, so a test can run many of them side by side — one
per MX host on 127.0.0.2, 127.0.0.3, … — and choose how each one misbehaves in one line.

The delivery path never uses them; ``bulkmail demo`` and ``scripts/bench.py`` do, which is why
dnslib and aiosmtpd are ordinary dependencies.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Peer:
    """A server with ``start()`` / ``stop()``, usable as ``with Server(...) as server:``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
