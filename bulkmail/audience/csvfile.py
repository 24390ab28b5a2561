"""What the CSV imports (subscribers, suppressions) share: the delimiter, the checks each cell
passes before the database sees it, and a report of rejected rows that streams.

Why check cells here rather than let the database refuse them: PostgreSQL refuses a NUL byte
in text and a value longer than its ``varchar(n)`` with an error for the whole statement (no
line number, and a batch-per-transaction import left 10,000 of 12,000 rows behind), while
SQLite stores both silently. Checking every cell first makes both databases see the same
rows, and the user see the line. Limits come from the model's column types, so they cannot
drift from the schema.

Control characters (C0, DEL, C1) are refused everywhere, except that a multi-line value
(an attribute) may hold tab, CR and LF; single-line values (address, name, reason, source)
may not, since they end up in headers and one-line reports.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
EXAMPLES = 100  # rejected rows kept in memory for the summary; the rest are only counted
SHOWN = 200  # characters of a rejected value kept for the report

_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")

T = TypeVar("T")


def column_limit(column: ColumnElement[Any]) -> int | None:
    """The column's length limit in characters (``String(n)``), or None (``Text``, JSON)."""
    return getattr(column.type, "length", None)


def cell_problem(name: str, value: str, limit: int | None, one_line: bool = True) -> str | None:
    """Why ``value`` (column ``name``) cannot be stored as it is, or None when it can."""
    bad = (_CONTROL_ONE_LINE if one_line else _CONTROL_MULTILINE).search(value)
    if bad is not None:
        return f"{name}: control character U+{ord(bad.group()):04X} at character {bad.start() + 1}"
    if limit is not None and len(value) > limit:
        return f"{name}: {len(value)} characters, longer than the {limit} allowed"
    return None


def shown(value: str) -> str:
    """A rejected value as the report keeps it: bounded, so a huge cell costs nothing."""
    return value if len(value) <= SHOWN else value[:SHOWN] + "..."


def pick_delimiter(first_line: str, fits: Callable[[list[str]], bool]) -> str | None:
    """The first of , ; tab | that splits ``first_line`` into cells that ``fits`` accepts.

    Chosen by what the first line must hold (a header naming ``email``, or an address first)
    rather than by ``csv.Sniffer``'s frequency guess, which a reason like "spam; trap" fools.
    """
    for delimiter in DELIMITERS:
        cells = next(csv.reader([first_line], delimiter=delimiter), [])
        if fits(cells):
            return delimiter
    return None


class Rejections(Generic[T]):
    """Rejected rows in constant memory: each goes to ``sink`` as it comes (a report being
    written), the first ``keep`` are kept as examples, and all are counted."""

    def __init__(self, sink: Callable[[T], None] | None = None, keep: int = EXAMPLES) -> None:
        self.sink = sink
        self.keep = keep
        self.examples: list[T] = []
        self.count = 0

    def add(self, rejection: T) -> None:
        self.count += 1
        if len(self.examples) < self.keep:
            self.examples.append(rejection)
        if self.sink is not None:
            self.sink(rejection)


def describe_cells(cells: Sequence[str], limit: int = 5) -> str:
    """The first cells of a header, for a message ("found: email;name")."""
    return ", ".join(shown(c) for c in cells[:limit]) if cells else "nothing"
