"""The suppression list: addresses no campaign mails, whatever list they are on.

Hard bounces and complaints add entries by themselves (``source`` bounce / complaint); an
operator adds, removes, imports and exports them here (``source`` manual / import). Addresses
are stored in their delivery form (``normalize_address``) and matched by their key
(``address_key``: case-insensitive), as subscribers are, so ``USER20@GOOD.TEST`` suppressed
stops ``user20@good.test`` at enqueue and at the claim-time check.

Reading is by keyset (``id > after``), never OFFSET, so listing or exporting a million entries
streams in constant memory. Importing checks every line before the database sees it (address,
control characters, the model's length limits: ``csvfile``), reports each rejected line with
its number as it finds it (keeping only the first few in memory), and writes the rest in one
transaction: a file is imported whole or not at all, on SQLite and PostgreSQL alike. The
delimiter (``,`` ``;`` tab ``|``) is the one that makes the first line an address or a header.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import CursorResult, Table, delete, select
from sqlalchemy.orm import Session

from bulkmail.audience.addresses import Address, InvalidAddress, normalize_address
from bulkmail.audience.csvfile import (
    DELIMITER_NAMES,
    Rejections,
    cell_problem,
    column_limit,
    pick_delimiter,
    shown,
)
from bulkmail.audience.forget import forgotten_key
from bulkmail.db.engine import Database
from bulkmail.db.engine import now as clock
from bulkmail.db.models import Suppression
from bulkmail.db.upsert import insert_for
from bulkmail.errors import InputError
from bulkmail.reports.export import spreadsheet_safe, spreadsheet_value

__all__ = [
    "Entry",
    "ImportResult",
    "Rejection",
    "add_suppression",
    "export_csv",
    "import_csv",
    "iter_suppressions",
    "list_suppressions",
    "remove_suppression",
]

PAGE = 1000
BATCH = 1000
MAX_REASON = 1000
EMAIL_LIMIT = column_limit(Suppression.__table__.c.email)
SOURCE_LIMIT = column_limit(Suppression.__table__.c.source)
EXPORT_COLUMNS = ("email", "reason", "source", "created_at")


@dataclass(frozen=True)
class Entry:
    id: int
    email: str
    reason: str
    source: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "reason": self.reason,
            "source": self.source,
            "created_at": iso_time(self.created_at),
        }


@dataclass(frozen=True)
class Rejection:
    line: int
    text: str
    reason: str


@dataclass
class ImportResult:
    added: int = 0
    existing: int = 0  # already suppressed (or repeated in the file): left as they were
    rejections: Rejections[Rejection] = field(default_factory=Rejections)

    @property
    def rejected(self) -> list[Rejection]:
        """The first rejected lines (``csvfile.EXAMPLES``); ``rejected_count`` counts all."""
        return self.rejections.examples

    @property
    def rejected_count(self) -> int:
        return self.rejections.count

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "existing": self.existing,
            "rejected_count": self.rejected_count,
            "rejected": [r.__dict__ for r in self.rejected],
        }


def iso_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(raw: str) -> Address:
    try:
        return normalize_address(raw)
    except InvalidAddress as exc:
        raise InputError(f"{raw!r}: {exc}") from None


def list_suppressions(
    db: Database, after: int = 0, limit: int = PAGE, source: str | None = None
) -> list[Entry]:
    """One page: up to ``limit`` entries with id > ``after``, oldest first (keyset paging)."""
    query = select(Suppression).where(Suppression.id > after)
    if source:
        query = query.where(Suppression.source == source)
    with db.session() as s:
        rows = s.scalars(query.order_by(Suppression.id).limit(limit)).all()
    return [Entry(r.id, r.email, r.reason, r.source, r.created_at) for r in rows]


def iter_suppressions(
    db: Database, source: str | None = None, page: int = PAGE, after: int = 0
) -> Iterator[Entry]:
    """Every entry (with id > ``after``), oldest first, read page by page (constant memory)."""
    while True:
        entries = list_suppressions(db, after, page, source)
        yield from entries
        if len(entries) < page:
            return
        after = entries[-1].id


def _insert(db: Database, rows: list[dict[str, Any]]) -> int:
    """Insert rows, keeping entries that exist; returns how many were new."""
    with db.session() as s:
        return _insert_rows(s, rows)


def _insert_rows(s: Session, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    table = cast(Table, Suppression.__table__)
    stmt = insert_for(s.get_bind().dialect.name, table).values(rows)
    stmt = stmt.on_conflict_do_nothing(index_elements=["email_key"])
    return len(s.execute(stmt.returning(table.c.email)).all())


def add_suppression(
    db: Database, email: str, reason: str = "", source: str = "manual", now: float | None = None
) -> bool:
    """Suppress ``email`` (normalised first); False if it was suppressed already (kept as is)."""
    address = _address(email)
    _check_options(reason, source)
    stamp = clock() if now is None else now
    return (
        _insert(
            db,
            [
                {
                    "email": address.email,
                    "email_key": address.key,
                    "reason": reason[:MAX_REASON],
                    "source": source,
                    "created_at": stamp,
                }
            ],
        )
        == 1
    )


def _check_options(reason: str, source: str) -> None:
    """A reason or source given on the command line, checked as a file's cells are."""
    for option, value, limit in (("--reason", reason, None), ("--source", source, SOURCE_LIMIT)):
        problem = cell_problem(option, value, limit)
        if problem:
            raise InputError(problem)


def remove_suppression(db: Database, email: str) -> bool:
    """Stop suppressing ``email`` (also its hashed entry, if it was forgotten: someone who
    asked to be erased and later subscribes again); False if it was not suppressed."""
    address = _address(email)
    keys = [address.key, forgotten_key(address.key)]
    with db.session() as s:
        res = cast(
            CursorResult[Any],
            s.execute(delete(Suppression).where(Suppression.email_key.in_(keys))),
        )
    return (res.rowcount or 0) > 0


def _open(path: Path | str) -> TextIO:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - caller closes
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def _check(fh: TextIO, where: str, delimiter: str) -> None:
    """Pass 1: the whole text decodes as UTF-8 and parses as CSV, before anything is written."""
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    try:
        for _ in reader:
            pass
    except UnicodeDecodeError:
        raise InputError(
            f"{where}: not UTF-8 text (near line {reader.line_num + 1}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        sep = DELIMITER_NAMES[delimiter]
        raise InputError(
            f"{where}: line {reader.line_num}: not valid CSV ({sep}-separated): {exc}"
        ) from None


def _fits(cells: list[str]) -> bool:
    """A first line read right: a header naming ``email``, or an address in the first cell."""
    if not cells:
        return False
    if "email" in (c.strip().lower() for c in cells):
        return True
    try:
        normalize_address(cells[0])
    except InvalidAddress:
        return False
    return True


def _delimiter(fh: TextIO, where: str) -> str:
    """The delimiter of the file (comma unless another makes the first line read right)."""
    try:
        for line in fh:
            if line.strip():
                fh.seek(0)
                return pick_delimiter(line, _fits) or ","
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text (near line 1); save it as UTF-8 CSV") from None
    fh.seek(0)
    return ","


@contextlib.contextmanager
def _checked_text(path: Path | str) -> Iterator[tuple[TextIO, str]]:
    """The file (``-``: standard input, read whole) and its delimiter, checked by pass 1,
    ready for pass 2."""
    if str(path) == "-":
        try:
            text = sys.stdin.buffer.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("<stdin>: not UTF-8 text; save it as UTF-8 CSV") from None
        delimiter = _delimiter(io.StringIO(text, newline=""), "<stdin>")
        _check(io.StringIO(text, newline=""), "<stdin>", delimiter)
        yield io.StringIO(text, newline=""), delimiter
        return
    with _open(path) as fh:
        delimiter = _delimiter(fh, str(path))
        _check(fh, str(path), delimiter)
    with _open(path) as fh:
        yield fh, delimiter


def _problem(raw: str, why: str, src: str) -> str:
    """Why a line cannot be stored as it is ("" when it can): what the database would refuse
    (PostgreSQL) or store wrongly (SQLite)."""
    return (
        cell_problem("email", raw, EMAIL_LIMIT)
        or cell_problem("reason", why, None)
        or cell_problem("source", src, SOURCE_LIMIT)
        or ""
    )


def _rows(
    lines: Iterable[str], delimiter: str, reason: str, source: str, result: ImportResult
) -> Iterator[tuple[Address, str, str]]:
    """(address, reason, source) per usable line; rejected lines go to ``result.rejections``."""
    reader = csv.reader(lines, delimiter=delimiter)  # pass 1 found no decoding or CSV errors
    columns: dict[str, int] = {"email": 0, "reason": 1}
    first = True
    end = 0
    for row in reader:
        line, end = end + 1, reader.line_num  # a quoted value may span lines: its first
        if not any(cell.strip() for cell in row):
            continue
        if first and "email" in (names := [c.strip().lower() for c in row]):
            columns = {name: i for i, name in reversed(list(enumerate(names)))}
            first = False
            continue
        first = False
        raw = _cell(row, columns["email"])
        why = _cell(row, columns.get("reason")) or reason
        src = _cell(row, columns.get("source")) or source
        problem = _problem(raw, why, src)
        try:
            if problem:
                raise InvalidAddress(problem)
            address = normalize_address(raw)
        except InvalidAddress as exc:
            text = shown(delimiter.join(row))
            result.rejections.add(Rejection(line, text, str(exc)))
            continue
        yield address, why, src


def _cell(row: list[str], index: int | None) -> str:
    """A cell's value; the ``'`` that ``export_csv`` put before a formula-like value is
    taken off again, so an export imports back exactly."""
    if index is None or index >= len(row):
        return ""
    return spreadsheet_value(row[index]).strip()


def import_csv(
    db: Database,
    path: Path | str,
    reason: str = "",
    source: str = "import",
    now: float | None = None,
    batch: int = BATCH,
    on_reject: Callable[[Rejection], None] | None = None,
) -> ImportResult:
    """Suppress every address of a CSV file (``email[,reason]``, or a header naming columns
    email, reason, source as ``export_csv`` writes them); ``-`` reads standard input.

    ``reason`` and ``source`` apply where the file gives none. A file that is not UTF-8 CSV
    changes nothing; existing entries are kept as they are. The file is written in one
    transaction (batches of ``batch`` rows): a failure part-way leaves nothing of it behind.
    ``on_reject`` receives every rejected line as it is found.
    """
    _check_options(reason, source)
    stamp = clock() if now is None else now
    result = ImportResult(rejections=Rejections(on_reject))
    pending: dict[str, dict[str, Any]] = {}
    with _checked_text(path) as (fh, delimiter), db.session() as s:
        for address, why, src in _rows(fh, delimiter, reason, source, result):
            if address.key in pending:
                result.existing += 1
                continue
            pending[address.key] = {
                "email": address.email,
                "email_key": address.key,
                "reason": why[:MAX_REASON],
                "source": src,
                "created_at": stamp,
            }
            if len(pending) >= batch:
                _flush(s, pending, result)
        _flush(s, pending, result)
    return result


def _flush(s: Session, pending: dict[str, dict[str, Any]], result: ImportResult) -> None:
    added = _insert_rows(s, list(pending.values()))
    result.added += added
    result.existing += len(pending) - added
    pending.clear()


def export_csv(db: Database, out: TextIO, source: str | None = None) -> int:
    """Write every entry as CSV (email, reason, source, created_at in UTC); returns the count.

    A cell a spreadsheet would run as a formula (``=HYPERLINK(...)`` in a bounce reason, an
    address starting with ``-``) gets a leading ``'`` (``reports.export.spreadsheet_safe``);
    ``import_csv`` takes it off again."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    safe = spreadsheet_safe
    for entry in iter_suppressions(db, source):
        writer.writerow(
            [safe(entry.email), safe(entry.reason), safe(entry.source), iso_time(entry.created_at)]
        )
        count += 1
    return count
