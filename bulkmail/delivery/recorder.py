"""The recorder: attempt outcomes buffered and written in batches.

One write per batch (a row bound or a time bound, whichever comes first) keeps the database
from throttling the sender. A row leaves ``sending`` only here, after the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from bulkmail.db import queries
from bulkmail.db.engine import Database
from bulkmail.db.queries import Result

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
    ) -> None:
        self._db = db
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
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        await self._in_db(queries.record, self._db, batch, time.time())
        self._on_written(batch)
