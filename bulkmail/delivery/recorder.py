"""The recorder: attempt outcomes buffered and written in batches.

One write per batch (a row bound or a time bound, whichever comes first) keeps the database
from throttling the sender. A row leaves ``sending`` only here, after the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bulkmail.bounces.escalate import DEFAULT_SOFT_LIMIT, SoftLimit
from bulkmail.db import queries
from bulkmail.db.engine import Database
from bulkmail.db.queries import Result
from bulkmail.errors import DatabaseError

log = logging.getLogger(__name__)
RETRY_SECONDS = (0.5, 1, 2, 4, 8, 15, 30)  # a database outage of about a minute is ridden out

InDb = Callable[..., Awaitable[object]]


class Recorder:
    """Buffers Results and writes them in batches; ``on_written`` hears of each written batch."""

    def __init__(
        self,
        db: Database,
        in_db: InDb,
        on_written: Callable[[list[Result]], None],
        max_rows: int,
        interval: float,
        owner: str | None = None,
        soft_limit: SoftLimit = DEFAULT_SOFT_LIMIT,
    ) -> None:
        self._db = db
        self.soft_limit = soft_limit  # [bounces] soft_bounce_*: SMTP-time full mailboxes add up
        self.owner = owner
        self._in_db = in_db
        self._on_written = on_written
        self._max_rows = max_rows
        self._interval = interval
        self._buffer: list[Result] = []
        self._wake = asyncio.Event()
        self.counts: dict[str, int] = {}

    def add(self, result: Result) -> None:
        self._buffer.append(result)
        self.counts[result.state] = self.counts.get(result.state, 0) + 1
        if len(self._buffer) >= self._max_rows:
            self._wake.set()

    async def run(self, done: asyncio.Event) -> None:
        """Flush until ``done`` is set and the buffer is empty."""
        while not (done.is_set() and not self._buffer):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write the buffer. A failed write keeps the batch and is retried with back-off: these
        rows were attempted (some delivered), and losing their outcome would resend them."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for wait in (*RETRY_SECONDS, None):
            try:
                await self._in_db(self._record, self._db, batch, time.time(), self.owner)
                break
            except DatabaseError as exc:
                if wait is None:
                    self._buffer = batch + self._buffer
                    raise
                log.warning("writing %d results failed (%s); retry in %ss", len(batch), exc, wait)
                await asyncio.sleep(wait)
        self._on_written(batch)

    def _record(self, db: Database, batch: list[Result], now: float, owner: str | None) -> None:
        """``queries.record`` with this engine's soft-bounce limit (``[bounces]``)."""
        queries.record(db, batch, now, owner, self.soft_limit)
