"""Running sends: one campaign now (``campaigns send``), one pass for cron (``run-due``), or
for ever (``worker``).

All three start an Engine in this process or in several (``--workers``), and all are safe to
run side by side, on one machine or many: claims are leased, sites are leased, campaign
transitions are conditional. SIGINT and SIGTERM stop claiming, let in-flight messages
finish, flush, and return normally.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bulkmail import campaigns as lib
from bulkmail.config import Settings, load_settings
from bulkmail.db import control, queries
from bulkmail.db.engine import Database
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    DRAFT,
    FINISHED,
    MISSED,
    PAUSED,
    RUNNING,
    SCHEDULED,
)
from bulkmail.delivery.engine import Engine
from bulkmail.delivery.owners import owner_id
from bulkmail.delivery.retry import parse_duration
from bulkmail.errors import BulkmailError, InputError
from bulkmail.scheduling import START, due_action
from bulkmail.webhooks.outbox import enable as enable_outbox

log = logging.getLogger("bulkmail")
MAX_SLEEP = 30.0  # with --wait, look again at least this often

Progress = Callable[[dict[str, int]], None]


@dataclass
class SendReport:
    campaign_id: int
    counts: dict[str, int] = field(default_factory=dict)
    state: str = ""
    interrupted: bool = False
    seconds: float = 0.0


def _show(progress: Progress, db: Database, campaign_id: int) -> None:
    """Feed the progress display; a display or status-read problem never stops a send."""
    try:
        progress(lib.state_counts(db, campaign_id))
    except Exception:  # noqa: BLE001
        log.debug("progress display failed", exc_info=True)


def start_campaign(db: Database, campaign_id: int, *, allow: tuple[str, ...]) -> bool:
    """Enqueue the campaign (once; re-running is harmless) and mark it running; False if its
    state was not one of ``allow`` (someone else moved it)."""
    c = lib.get_campaign(db, campaign_id)
    if c.state not in allow and c.state != RUNNING:
        return False
    if not c.enqueued:
        queries.enqueue(db, campaign_id, c.list_id, time.time())
        queries.mark_enqueued(db, campaign_id)
    if c.state != RUNNING and control.transition(
        db, campaign_id, RUNNING, time.time(), from_states=allow
    ):
        log.debug("campaign %s %r: %s -> running", c.id, c.name, c.state)
    return True


def finish_done(db: Database, campaign_ids: list[int]) -> None:
    """Mark running campaigns finished once no delivery is queued, sending or deferred."""
    for cid in campaign_ids:
        left, _ = queries.pending(db, cid)
        if left == 0 and control.transition(db, cid, FINISHED, time.time(), from_states=[RUNNING]):
            log.debug("campaign %s: running -> finished", cid)


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _engine_pass(
    settings: Settings,
    db: Database,
    scope: list[int] | None,
    deadline: float | None = None,
    progress: Progress | None = None,
    follow: int | None = None,
    peers: int = 1,
) -> bool:
    """One engine pass in this process; True if it was stopped (signal or deadline)."""
    engine = Engine(settings, db, scope, owner=owner_id(), peers_hint=peers)
    loop = asyncio.get_running_loop()
    # The caller's handlers come back after the pass: asyncio would leave the defaults, and a
    # SIGTERM between two passes of ``worker`` then killed it (-15) instead of stopping it.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        loop.add_signal_handler(sig, engine.stop)
    try:
        task = asyncio.create_task(engine.run(until_idle=True, deadline=deadline))
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if progress and follow is not None:
                await asyncio.to_thread(_show, progress, db, follow)
        await task
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)
    return engine.stopping.is_set()


def _worker_main(
    config_path: str | None, scope: list[int] | None, deadline_in: float | None, peers: int
) -> None:
    """Entry point of a spawned worker process: one engine pass, exit code 3 if stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; SIGTERM stops us
    deadline = time.monotonic() + deadline_in if deadline_in is not None else None
    try:
        settings = load_settings(config_path)
        stopped = _run_loop(
            _engine_pass(
                settings,
                enable_outbox(Database(settings.database.url), settings),
                scope,
                deadline,
                peers=peers,
            )
        )
    except BulkmailError as exc:
        print(f"bulkmail: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(3 if stopped else 0)


def _run_processes(
    config_path: str | None,
    scope: list[int] | None,
    workers: int,
    db: Database,
    deadline: float | None,
    progress: Progress | None,
    follow: int | None,
) -> bool:
    """One pass in ``workers`` processes; True if interrupted."""
    ctx = multiprocessing.get_context("spawn")
    left = deadline - time.monotonic() if deadline is not None else None
    procs = [
        ctx.Process(target=_worker_main, args=(config_path, scope, left, workers))
        for _ in range(workers)
    ]
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
            if progress and follow is not None:
                _show(progress, db, follow)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    codes = {p.exitcode for p in procs}
    if codes - {0, 3}:  # 2: our error (printed); anything else: a crash or a kill
        raise BulkmailError(
            f"a worker process failed (exit codes {sorted(c or 0 for c in codes)}; "
            "see its message above)"
        )
    return interrupted or 3 in codes


def _one_pass(
    settings: Settings,
    db: Database,
    scope: list[int] | None,
    *,
    workers: int,
    config_path: str | None,
    deadline: float | None = None,
    progress: Progress | None = None,
    follow: int | None = None,
) -> bool:
    if workers > 1:
        return _run_processes(config_path, scope, workers, db, deadline, progress, follow)
    return bool(_run_loop(_engine_pass(settings, db, scope, deadline, progress, follow)))


def send_campaign(
    settings: Settings,
    db: Database,
    campaign_id: int,
    *,
    workers: int = 1,
    wait: bool = False,
    config_path: str | None = None,
    progress: Progress | None = None,
) -> SendReport:
    """Deliver what is due now (``wait``: until every delivery is final)."""
    started = time.monotonic()
    c = lib.get_campaign(db, campaign_id)
    if c.state == CAMPAIGN_CANCELLED:
        raise InputError(f"campaign {campaign_id} was cancelled; create a new one to send")
    if c.state == PAUSED:
        raise InputError(
            f"campaign {campaign_id} is paused ({c.state_reason or 'by request'}); "
            f"run 'bulkmail campaigns resume {campaign_id}' first"
        )
    start_campaign(db, campaign_id, allow=(DRAFT, SCHEDULED, MISSED, FINISHED))
    report = SendReport(campaign_id)
    while True:
        report.interrupted = _one_pass(
            settings,
            db,
            [campaign_id],
            workers=workers,
            config_path=config_path,
            progress=progress,
            follow=campaign_id,
        )
        finish_done(db, [campaign_id])
        state = lib.get_campaign(db, campaign_id).state
        if state != RUNNING or report.interrupted or not wait:
            break
        if _sleep_until_due(db, campaign_id, progress):
            report.interrupted = True
            break
    report.counts = lib.state_counts(db, campaign_id)
    report.state = lib.get_campaign(db, campaign_id).state
    report.seconds = time.monotonic() - started
    return report


def start_due(settings: Settings, db: Database, now: float | None = None) -> list[int]:
    """Start scheduled campaigns whose time has come; mark those past the grace missed."""
    now = time.time() if now is None else now
    grace = parse_duration(settings.schedule.grace)
    started = []
    for cid, at in control.due_scheduled(db, now):
        if due_action(at, now, grace) == START:
            if start_campaign(db, cid, allow=(SCHEDULED,)):
                started.append(cid)
        elif control.transition(
            db,
            cid,
            MISSED,
            now,
            from_states=[SCHEDULED],
            reason=f"its time passed more than {settings.schedule.grace} ago; "
            f"send it with 'bulkmail campaigns send {cid}'",
        ):
            log.debug(
                "campaign %s: scheduled -> missed (more than %s late)", cid, settings.schedule.grace
            )
    return started


def run_due(
    settings: Settings,
    db: Database,
    *,
    max_runtime: float | None = None,
    workers: int = 1,
    config_path: str | None = None,
) -> dict[str, Any]:
    """One pass for cron: start due campaigns, deliver everything due now, finish what is done."""
    deadline = time.monotonic() + max_runtime if max_runtime else None
    started = start_due(settings, db)
    running = control.campaigns_in(db, [RUNNING])
    interrupted = False
    if running:
        interrupted = _one_pass(
            settings, db, None, workers=workers, config_path=config_path, deadline=deadline
        )
    finish_done(db, running)
    return {
        "started": started,
        "campaigns": running,
        "interrupted": interrupted,
        "states": {cid: lib.get_campaign(db, cid).state for cid in running},
    }


def worker(
    settings: Settings,
    db: Database,
    *,
    config_path: str | None = None,
    max_idle_sleep: float = 30.0,
    stop_after: float | None = None,
) -> None:
    """Run due work as it appears until SIGTERM/SIGINT (or ``stop_after`` seconds), logging
    one line per campaign state change it sees."""
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    end = time.monotonic() + stop_after if stop_after else None
    states = _log_changes(db, {})
    sleep = 0.5
    while True:
        for s in (signal.SIGINT, signal.SIGTERM):  # an engine pass resets them: set each time
            signal.signal(s, on_signal)
        if stop or (end is not None and time.monotonic() >= end):
            break
        result = run_due(
            settings,
            db,
            config_path=config_path,
            max_runtime=(end - time.monotonic()) if end else None,
        )
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, on_signal)
        states = _log_changes(db, states)
        if result["interrupted"] or stop:
            break
        busy = bool(result["campaigns"] or result["started"])
        sleep = 0.5 if busy else min(sleep * 2, max_idle_sleep)
        _interruptible_sleep(min(sleep, _next_due_in(db)), lambda: stop)
        states = _log_changes(db, states)
    log.info("worker stopped")


def _log_changes(db: Database, before: dict[int, str]) -> dict[int, str]:
    now = {c.id: c.state for c in lib.all_campaigns(db)}
    for cid, state in now.items():
        if before and before.get(cid) != state:
            log.info("campaign %s: %s -> %s", cid, before.get(cid, "new"), state)
    return now


def _next_due_in(db: Database) -> float:
    """Seconds until the next retry or scheduled start is due (at most an hour)."""
    now = time.time()
    due = [at for _, at in control.due_scheduled(db, now + 3600)]
    for cid in control.campaigns_in(db, [RUNNING]):
        _, next_at = queries.pending(db, cid)
        if next_at is not None:
            due.append(next_at)
    return max(0.0, min(due, default=now + 3600) - now)


def _interruptible_sleep(seconds: float, stopped: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while not stopped() and time.monotonic() < end:
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def _sleep_until_due(db: Database, campaign_id: int, progress: Progress | None) -> bool:
    """Sleep until the campaign's next retry is due; True if interrupted meanwhile."""
    _, due = queries.pending(db, campaign_id)
    delay = min(MAX_SLEEP, max(0.0, (due or time.time()) - time.time()))
    interrupted = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _interruptible_sleep(delay, lambda: interrupted)
        if progress:
            _show(progress, db, campaign_id)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return interrupted
