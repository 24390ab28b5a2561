"""The suppression list: addresses no campaign mails, whatever list they are on.

Hard bounces and complaints add entries by themselves (``source`` bounce / complaint); an
operator adds, removes, imports and exports them here (``source`` manual / import). Addresses
are stored in their delivery form (``normalize_address``) and matched by their key
(``address_key``: case-insensitive), as subscribers are, so ``USER20@GOOD.TEST`` suppressed
stops ``user20@good.test`` at enqueue and at the claim-time check.

Reading is by keyset (``id > after``), never OFFSET, so listing or exporting a million entries
streams in constant memory. Importing writes one transaction per batch and reports every
rejected line with its number.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import CursorResult, Table, delete, select

from bulkmail.audience.addresses import Address, InvalidAddress, normalize_address
from bulkmail.db.engine import Database
from bulkmail.db.engine import now as clock
from bulkmail.db.models import Suppression
from bulkmail.db.upsert import insert_for
from bulkmail.errors import InputError

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
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "existing": self.existing,
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
    if not rows:
        return 0
    with db.session() as s:
        table = cast(Table, Suppression.__table__)
        stmt = insert_for(s.get_bind().dialect.name, table).values(rows)
        stmt = stmt.on_conflict_do_nothing(index_elements=["email_key"])
        return len(s.execute(stmt.returning(table.c.email)).all())


def add_suppression(
    db: Database, email: str, reason: str = "", source: str = "manual", now: float | None = None
) -> bool:
    """Suppress ``email`` (normalised first); False if it was suppressed already (kept as is)."""
    address = _address(email)
    stamp = clock() if now is None else now
    return (
        _insert(
            db,
            [
                {
                    "email": address.email,
                    "email_key": address.key,
                    "reason": reason[:MAX_REASON],
                    "source": source[:50],
                    "created_at": stamp,
                }
            ],
        )
        == 1
    )


def remove_suppression(db: Database, email: str) -> bool:
    """Stop suppressing ``email``; False if it was not suppressed."""
    address = _address(email)
    with db.session() as s:
        res = cast(
            CursorResult[Any],
            s.execute(delete(Suppression).where(Suppression.email_key == address.key)),
        )
    return (res.rowcount or 0) > 0


def _open(path: Path | str) -> TextIO:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - caller closes
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def _check(fh: TextIO, where: str) -> None:
    """Pass 1: the whole text decodes as UTF-8 and parses as CSV, before anything is written."""
    reader = csv.reader(fh, strict=True)
    try:
        for _ in reader:
            pass
    except UnicodeDecodeError:
        raise InputError(
            f"{where}: not UTF-8 text (near line {reader.line_num + 1}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise InputError(f"{where}: line {reader.line_num}: not valid CSV: {exc}") from None


@contextlib.contextmanager
def _checked_text(path: Path | str) -> Iterator[TextIO]:
    """The file (``-``: standard input, read whole), checked by pass 1, ready for pass 2."""
    if str(path) == "-":
        try:
            text = sys.stdin.buffer.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("<stdin>: not UTF-8 text; save it as UTF-8 CSV") from None
        _check(io.StringIO(text, newline=""), "<stdin>")
        yield io.StringIO(text, newline="")
        return
    with _open(path) as fh:
        _check(fh, str(path))
    with _open(path) as fh:
        yield fh


def _rows(
    lines: Iterable[str], reason: str, source: str, result: ImportResult
) -> Iterator[tuple[Address, str, str]]:
    """(email, reason, source) per usable line; rejected lines go into ``result``."""
    reader = csv.reader(lines)  # pass 1 found no decoding or CSV errors
    columns: dict[str, int] = {"email": 0, "reason": 1}
    first = True
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if first and "email" in (names := [c.strip().lower() for c in row]):
            columns = {name: i for i, name in reversed(list(enumerate(names)))}
            first = False
            continue
        first = False
        try:
            address = normalize_address(_cell(row, columns["email"]))
        except InvalidAddress as exc:
            result.rejected.append(Rejection(reader.line_num, ",".join(row)[:200], str(exc)))
            continue
        yield (
            address,
            _cell(row, columns.get("reason")) or reason,
            _cell(row, columns.get("source")) or source,
        )


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def import_csv(
    db: Database,
    path: Path | str,
    reason: str = "",
    source: str = "import",
    now: float | None = None,
    batch: int = BATCH,
) -> ImportResult:
    """Suppress every address of a CSV file (``email[,reason]``, or a header naming columns
    email, reason, source as ``export_csv`` writes them); ``-`` reads standard input.

    ``reason`` and ``source`` apply where the file gives none. A file that is not UTF-8 CSV
    changes nothing; existing entries are kept as they are. Each batch is its own
    transaction, so re-running an interrupted import is safe.
    """
    stamp = clock() if now is None else now
    result = ImportResult()
    pending: dict[str, dict[str, Any]] = {}
    with _checked_text(path) as fh:
        for address, why, src in _rows(fh, reason, source, result):
            if address.key in pending:
                result.existing += 1
                continue
            pending[address.key] = {
                "email": address.email,
                "email_key": address.key,
                "reason": why[:MAX_REASON],
                "source": src[:50],
                "created_at": stamp,
            }
            if len(pending) >= batch:
                _flush(db, pending, result)
        _flush(db, pending, result)
    return result


def _flush(db: Database, pending: dict[str, dict[str, Any]], result: ImportResult) -> None:
    added = _insert(db, list(pending.values()))
    result.added += added
    result.existing += len(pending) - added
    pending.clear()


def export_csv(db: Database, out: TextIO, source: str | None = None) -> int:
    """Write every entry as CSV (email, reason, source, created_at in UTC); returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for entry in iter_suppressions(db, source):
        writer.writerow([entry.email, entry.reason, entry.source, iso_time(entry.created_at)])
        count += 1
    return count
