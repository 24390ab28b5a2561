"""Running a send: enqueue, start the engine in one or more processes, follow, finish.

``send_campaign`` is what ``bulkmail campaigns send`` calls. It enqueues the campaign
(idempotent), then runs passes of the Engine until nothing is due; with ``wait`` it sleeps
until the next retry is due and goes on until every delivery is final. ``workers > 1`` runs
the engine in that many processes, each with its share of the per-site limits. SIGINT and
SIGTERM stop claiming, let in-flight messages finish, flush, and return normally.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from bulkmail import campaigns as lib
from bulkmail.config import Settings, load_settings
from bulkmail.db import queries
from bulkmail.db.engine import Database
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    FINISHED,
    RUNNING,
)
from bulkmail.delivery.engine import Engine
from bulkmail.errors import BulkmailError, InputError

MAX_SLEEP = 30.0  # with --wait, look again at least this often

Progress = Callable[[dict[str, int]], None]


@dataclass
class SendReport:
    campaign_id: int
    counts: dict[str, int] = field(default_factory=dict)
    state: str = ""
    interrupted: bool = False
    seconds: float = 0.0


def owner_id() -> str:
    """A lease owner name unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def prepare(db: Database, campaign_id: int) -> None:
    """Enqueue the campaign's deliveries (once; re-running is harmless) and mark it running."""
    c = lib.get_campaign(db, campaign_id)
    if c.state == CAMPAIGN_CANCELLED:
        raise InputError(f"campaign {campaign_id} was cancelled; create a new one to send")
    if not c.enqueued:
        queries.enqueue(db, campaign_id, c.list_id, time.time())
        queries.mark_enqueued(db, campaign_id)
    if c.state != FINISHED:
        queries.set_campaign_state(db, campaign_id, RUNNING, time.time())


def finish_if_done(db: Database, campaign_id: int) -> bool:
    """Mark the campaign finished when no delivery is queued, sending or deferred."""
    left, _ = queries.pending(db, campaign_id)
    if left == 0:
        queries.set_campaign_state(db, campaign_id, FINISHED, time.time())
    return left == 0


async def _engine_pass(settings: Settings, db: Database, campaign_ids: list[int],
                       share: int) -> bool:
    """One engine pass; True if it was stopped by a signal."""
    engine = Engine(settings, db, campaign_ids, owner=owner_id(), share=share)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, engine.stop)
    try:
        await engine.run(until_idle=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return engine.stopping.is_set()


def _run_loop(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _worker_main(config_path: str | None, campaign_ids: list[int], share: int) -> None:
    """Entry point of a worker process (spawned): one engine pass, exit code 3 if stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM stops us
    try:
        settings = load_settings(config_path)
        db = Database(settings.database.url)
        stopped = _run_loop(_engine_pass(settings, db, campaign_ids, share))
    except BulkmailError as exc:
        print(f"bulkmail: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(3 if stopped else 0)


def _run_workers(config_path: str | None, campaign_ids: list[int], workers: int,
                 db: Database, progress: Progress | None) -> bool:
    """Run ``workers`` processes for one pass; True if interrupted."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(config_path, campaign_ids, workers))
             for _ in range(workers)]
    for p in procs:
        p.start()
    interrupted = False

    def forward(_sig: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(timeout=0.5)
            if progress:
                progress(lib.state_counts(db, campaign_ids[0]))
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    codes = {p.exitcode for p in procs}
    if 2 in codes:
        raise BulkmailError("a worker process failed (see its message above)")
    return interrupted or 3 in codes


def send_campaign(settings: Settings, db: Database, campaign_id: int, *, workers: int = 1,
                  wait: bool = False, config_path: str | None = None,
                  progress: Progress | None = None) -> SendReport:
    """Deliver what is due now (``wait``: until every delivery is final)."""
    started = time.monotonic()
    prepare(db, campaign_id)
    report = SendReport(campaign_id)
    while True:
        if workers > 1:
            report.interrupted = _run_workers(config_path, [campaign_id], workers, db, progress)
        else:
            report.interrupted = _run_loop(_in_process_pass(settings, db, campaign_id, progress))
        done = finish_if_done(db, campaign_id)
        if done or report.interrupted or not wait:
            break
        if _sleep_until_due(db, campaign_id, progress):
            report.interrupted = True
            break
    report.counts = lib.state_counts(db, campaign_id)
    report.state = lib.get_campaign(db, campaign_id).state
    report.seconds = time.monotonic() - started
    return report


async def _in_process_pass(settings: Settings, db: Database, campaign_id: int,
                           progress: Progress | None) -> bool:
    if progress is None:
        return await _engine_pass(settings, db, [campaign_id], 1)
    task = asyncio.create_task(_engine_pass(settings, db, [campaign_id], 1))
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        progress(await asyncio.to_thread(lib.state_counts, db, campaign_id))
    return task.result()


def _sleep_until_due(db: Database, campaign_id: int, progress: Progress | None) -> bool:
    """Sleep until the next retry is due; True if interrupted meanwhile."""
    _, due = queries.pending(db, campaign_id)
    delay = min(MAX_SLEEP, max(0.0, (due or time.time()) - time.time()))
    interrupted = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        end = time.monotonic() + delay
        while not interrupted and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()) if end > time.monotonic() else 0)
            if progress:
                progress(lib.state_counts(db, campaign_id))
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return interrupted
