"""Showing a send's progress: a live bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

FINAL = ("sent", "bounced", "complained", "expired", "failed", "skipped", "cancelled")
ALWAYS = ("sent", "deferred", "bounced")  # shown even at 0
WHEN_ANY = ("expired", "failed", "complained", "skipped", "cancelled")  # shown once not 0


def outcome_counts(counts: dict[str, int]) -> str:
    """``sent 5, deferred 1, bounced 0, expired 3``: the outcomes so far, every non-zero one
    (an expired or failed recipient is never hidden), in a fixed order."""
    shown = [*ALWAYS] + [k for k in WHEN_ANY if counts.get(k, 0)]
    return ", ".join(f"{k} {counts.get(k, 0)}" for k in shown)


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
                TextColumn("{task.fields[outcomes]}  {task.fields[rate]:.0f}/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "send", total=None, cid=self.campaign_id, outcomes=outcome_counts({}), rate=0.0
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
                outcomes=outcome_counts(counts),
                rate=rate,
            )
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            click.echo(
                f"campaign {self.campaign_id}: {done}/{total} done, "
                f"{outcome_counts(counts)}, {rate:.0f}/s",
                err=True,
            )
