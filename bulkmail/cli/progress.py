"""Showing a send's progress: a live bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

FINAL = ("sent", "bounced", "complained", "expired", "failed", "skipped", "cancelled")


class ProgressView:
    """Called with the campaign's state counts; renders them. Use as a context manager."""

    def __init__(self, campaign_id: int, *, enabled: bool = True, interval: float = 5.0) -> None:
        self.campaign_id = campaign_id
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.interval = interval
        self._last_line = 0.0
        self._start = time.monotonic()
        self._first_done: int | None = None
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressView:
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("campaign {task.fields[cid]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn(
                    "sent {task.fields[sent]} deferred {task.fields[deferred]} "
                    "bounced {task.fields[bounced]}  {task.fields[rate]:.0f}/s"
                ),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "send", total=None, cid=self.campaign_id, sent=0, deferred=0, bounced=0, rate=0.0
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, counts: dict[str, int]) -> None:
        if not self.enabled:
            return
        total = sum(counts.values())
        done = sum(counts.get(k, 0) for k in FINAL)
        if self._first_done is None:
            self._first_done = done
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = (done - self._first_done) / elapsed
        if self._progress is not None:
            self._progress.update(
                self._task,
                total=total,
                completed=done,
                sent=counts.get("sent", 0),
                deferred=counts.get("deferred", 0),
                bounced=counts.get("bounced", 0),
                rate=rate,
            )
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            click.echo(
                f"campaign {self.campaign_id}: {done}/{total} done, "
                f"sent {counts.get('sent', 0)}, deferred {counts.get('deferred', 0)}, "
                f"bounced {counts.get('bounced', 0)}, {rate:.0f}/s",
                err=True,
            )
