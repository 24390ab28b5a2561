"""The report of an import's rejected rows, written as the rows are found.

A file of a million bad rows must not hold a million rejections in memory (it took 291 MB),
so the importers hand each rejection to a :class:`RejectReport` as they find it:
- ``--json``: one JSON document, streamed: ``{"rejected": [...every row...], "imported": ...,
  "rejected_count": ...}`` (the counts come last, when they are known);
- text: the first ``SHOW`` rejections to stderr, then how many more there were.
Values come from strangers' files: control characters are shown escaped, never sent raw to
the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

import click

from bulkmail.reports.terminal import printable

SHOW = 50


class RejectReport:
    """Receives rejections (``__call__``) and writes them; ``finish`` writes the summary."""

    def __init__(self, as_json: bool, line: Callable[[Any], str], show: int = SHOW) -> None:
        self.as_json = as_json
        self.line = line
        self.show = show
        self.count = 0
        self.out: TextIO = click.get_text_stream("stdout")

    def __call__(self, rejection: Any) -> None:
        if self.as_json:
            # The document opens with the first rejection, not before: a file refused as a
            # whole (pass 1, before any row is read) leaves stdout empty.
            item = json.dumps(rejection.__dict__, ensure_ascii=False)
            self.out.write(('{"rejected": [' if not self.count else ",") + "\n" + item)
        elif self.count < self.show:
            click.echo("  " + printable(self.line(rejection)), err=True)
        self.count += 1

    def finish(self, summary: dict[str, Any], text: str) -> None:
        """End the report: the rest of the JSON document, or ``text`` and what was not shown."""
        if self.as_json:
            rest = json.dumps({**summary, "rejected_count": self.count}, ensure_ascii=False)
            self.out.write(("\n], " if self.count else '{"rejected": [], ') + rest[1:] + "\n")
            self.out.flush()
            return
        click.echo(text)
        if self.count > self.show:
            click.echo(f"  ... and {self.count - self.show} more (use --json for all)", err=True)
