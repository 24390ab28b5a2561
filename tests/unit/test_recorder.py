"""The recorder keeps a batch whose write failed and writes it again (pure, no database)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bulkmail.db.queries import Result
from bulkmail.delivery import recorder as recorder_module
from bulkmail.delivery.recorder import Recorder
from bulkmail.errors import DatabaseError


def result(i: int) -> Result:
    return Result(i, 1, i, f"u{i}@a.test", "sent", 1, None, 250, "2.0.0", "ok", "mx", None, None)


def test_a_failed_write_is_retried_and_nothing_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", (0.0, 0.0))
    calls: list[int] = []
    written: list[int] = []

    async def in_db(fn: Any, db: Any, batch: list[Result], now: float, owner: Any) -> None:
        calls.append(len(batch))
        if len(calls) < 3:
            raise DatabaseError("database is locked")

    async def go() -> None:
        rec = Recorder(None, in_db, lambda b: written.extend(r.delivery_id for r in b), 100, 0.01)  # type: ignore[arg-type]
        for i in range(5):
            rec.add(result(i))
        await rec.flush()

    asyncio.run(go())
    assert calls == [5, 5, 5]
    assert written == [0, 1, 2, 3, 4]


def test_a_database_that_stays_away_raises_and_keeps_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", (0.0,))

    async def in_db(*_: Any) -> None:
        raise DatabaseError("database is unreachable")

    async def go() -> Recorder:
        rec = Recorder(None, in_db, lambda b: None, 100, 0.01)  # type: ignore[arg-type]
        rec.add(result(1))
        with pytest.raises(DatabaseError):
            await rec.flush()
        return rec

    rec = asyncio.run(go())
    assert [r.delivery_id for r in rec._buffer] == [1]
