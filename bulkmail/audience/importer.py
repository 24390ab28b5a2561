"""CSV audience import: streamed, validated, all or nothing.

Two passes over the file. The first reads it through without touching the database, so a file
that is not UTF-8, is not CSV or has no ``email`` column changes nothing; it also finds the
delimiter (``,`` ``;`` tab ``|``: whichever makes the header name an ``email`` column). The
second checks every row before the database sees it (address, control characters, the
model's length limits: ``csvfile``), rejects bad rows with their line numbers, and upserts
the rest in batches, all in one transaction: a file is imported whole or not at all, on
SQLite and PostgreSQL alike. (On SQLite that transaction holds the write lock while it runs;
a sender's writes wait for it, up to the 30 s busy timeout, and its recorder retries.)

Re-running an import updates rather than duplicates: subscribers are matched by address key
(``address_key``: case-insensitive), so ``ANN@X.TEST`` updates ``Ann@x.test``; a member who
unsubscribed stays unsubscribed.

Rejected rows stream: each is passed to ``on_reject`` as it is found, and the result keeps
only the first few as examples and a count, so a file of a million bad rows costs no more
memory than a good one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from bulkmail.audience.addresses import InvalidAddress, normalize_address
from bulkmail.audience.csvfile import (
    DELIMITER_NAMES,
    Rejections,
    cell_problem,
    column_limit,
    describe_cells,
    pick_delimiter,
    shown,
)
from bulkmail.audience.lists import find_list
from bulkmail.db.engine import Database, now
from bulkmail.db.models import SUBSCRIBED, Membership, Subscriber
from bulkmail.db.upsert import insert_for
from bulkmail.errors import InputError

BATCH = 5000
csv.field_size_limit(1 << 20)
EMAIL_LIMIT = column_limit(Subscriber.__table__.c.email)
NAME_LIMIT = column_limit(Subscriber.__table__.c.name)


@dataclass
class Rejection:
    line: int
    email: str  # the row's email cell (at most ``csvfile.SHOWN`` characters)
    reason: str


@dataclass
class ImportResult:
    imported: int = 0
    updated: int = 0
    rejections: Rejections[Rejection] = field(default_factory=Rejections)

    @property
    def rejected(self) -> list[Rejection]:
        """The first rejected rows (``csvfile.EXAMPLES``); ``rejected_count`` counts all."""
        return self.rejections.examples

    @property
    def rejected_count(self) -> int:
        return self.rejections.count

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "rejected_count": self.rejected_count,
            "rejected": [r.__dict__ for r in self.rejected],
        }


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    key: str  # address_key(email): what the upsert matches on
    domain: str
    name: str
    attributes: dict[str, str]


def _open(path: Path) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - caller closes
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def _names(cells: list[str]) -> list[str]:
    return [c.strip().lower() for c in cells]


def _delimiter(path: Path, fh: io.TextIOWrapper) -> str:
    """The delimiter that makes the first line a header with an ``email`` column."""
    try:
        first = fh.readline()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (line 1); save it as UTF-8 CSV") from None
    fh.seek(0)
    if not first.strip():
        raise InputError(f"{path}: empty file, expected a header row with an 'email' column")
    found = pick_delimiter(first, lambda cells: "email" in _names(cells))
    if found is None:
        raise InputError(
            f"{path}: line 1: no 'email' column in the header "
            f"(found: {describe_cells(next(csv.reader([first])))}); the header must name an "
            "'email' column, with columns separated by commas, semicolons, tabs or |"
        )
    return found


def _header(path: Path, reader: Any) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(
            f"{path}: empty file, expected a header row with an 'email' column"
        ) from None
    names = _names(header)
    if "email" not in names:
        raise InputError(
            f"{path}: line 1: no 'email' column in the header (found: {describe_cells(header)})"
        )
    for cell in header:
        problem = cell_problem("column name", cell, None)
        if problem:
            raise InputError(f"{path}: line 1: {problem}")
    dupes = {n for n in names if names.count(n) > 1 and n}
    if dupes:
        raise InputError(f"{path}: line 1: column {sorted(dupes)[0]!r} appears twice")
    return names


def check_file(path: Path) -> str:
    """Pass 1: the whole file decodes as UTF-8 and parses as CSV with an email column.
    Returns its delimiter."""
    with _open(path) as fh:
        delimiter = _delimiter(path, fh)
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            _header(path, reader)
            for _ in reader:
                pass
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path}: not UTF-8 text (byte {exc.start} of a chunk near line "
                f"{reader.line_num + 1}); save it as UTF-8 CSV"
            ) from None
        except csv.Error as exc:
            sep = DELIMITER_NAMES[delimiter]
            raise InputError(
                f"{path}: line {reader.line_num}: not valid CSV ({sep}-separated): {exc}"
            ) from None
    return delimiter


def _problem(values: list[str], email_at: int, name_at: int, extra: list[tuple[int, str]]) -> str:
    """Why a row cannot be stored as it is ("" when it can): cells the database would refuse
    (PostgreSQL) or store wrongly (SQLite)."""
    problem = cell_problem("email", values[email_at], EMAIL_LIMIT)
    if not problem and name_at >= 0:
        problem = cell_problem("name", values[name_at].strip(), NAME_LIMIT)
    for i, n in extra:
        if problem:
            break
        problem = cell_problem(n, values[i], None, one_line=False)
    return problem or ""


def read_rows(path: Path, result: ImportResult, delimiter: str = ",") -> Iterator[Row]:
    """Pass 2: valid rows, in file order; invalid ones go to ``result.rejections``."""
    with _open(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        names = _header(path, reader)
        width = len(names)
        email_at = names.index("email")
        name_at = names.index("name") if "name" in names else -1
        extra = [(i, n) for i, n in enumerate(names) if i not in (email_at, name_at) and n]
        reject = result.rejections.add
        end = reader.line_num
        for values in reader:
            line, end = end + 1, reader.line_num  # a quoted value may span lines: its first
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # a blank line is not a row
            if len(values) != width:
                raw = values[email_at] if len(values) > email_at else ""
                reject(Rejection(line, shown(raw), f"expected {width} fields, found {len(values)}"))
                continue
            problem = _problem(values, email_at, name_at, extra)
            if problem:
                reject(Rejection(line, shown(values[email_at]), problem))
                continue
            try:
                addr = normalize_address(values[email_at])
            except InvalidAddress as exc:
                reject(Rejection(line, shown(values[email_at]), str(exc)))
                continue
            name = values[name_at].strip() if name_at >= 0 else ""
            attrs = {n: values[i] for i, n in extra if values[i] != ""}
            yield Row(line, addr.email, addr.key, addr.domain, name, attrs)


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_batch(
    s: Session, dialect: str, list_id: int, batch: list[Row], result: ImportResult
) -> None:
    latest: dict[str, Row] = {}
    for row in batch:  # a duplicate inside the file (in any case): the later row's data wins,
        first = latest.get(row.key)  # the address stays as first written, as across imports
        if first is not None:
            result.updated += 1
            row = replace(row, email=first.email, domain=first.domain)
        latest[row.key] = row
    stamp = now()
    existing = dict(
        s.execute(
            select(Subscriber.email_key, Subscriber.id).where(
                Subscriber.email_key.in_(list(latest))
            )
        ).all()
    )
    result.updated += len(existing)
    result.imported += len(latest) - len(existing)
    table = cast(Table, Subscriber.__table__)
    stmt = insert_for(dialect, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.email_key],
        set_={
            "name": func.coalesce(func.nullif(stmt.excluded.name, ""), table.c.name),
            "attributes": stmt.excluded.attributes,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    s.execute(
        stmt,
        [
            {
                "email": r.email,
                "email_key": r.key,
                "domain": r.domain,
                "name": r.name,
                "attributes": r.attributes,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for r in latest.values()
        ],
    )
    ids = (
        s.execute(select(Subscriber.id).where(Subscriber.email_key.in_(list(latest))))
        .scalars()
        .all()
    )
    mstmt = insert_for(dialect, cast(Table, Membership.__table__)).on_conflict_do_nothing()
    s.execute(
        mstmt,
        [
            {"list_id": list_id, "subscriber_id": i, "status": SUBSCRIBED, "updated_at": stamp}
            for i in ids
        ],
    )


def import_csv(
    db: Database,
    list_name: str,
    path: Path,
    batch_size: int = BATCH,
    on_reject: Callable[[Rejection], None] | None = None,
) -> ImportResult:
    """Import ``path`` into the list ``list_name``; see the module docstring for the guarantees.

    ``on_reject`` receives every rejected row as it is found (the result keeps the first few).
    """
    path = Path(path)
    lst = find_list(db, list_name)
    delimiter = check_file(path)
    result = ImportResult(rejections=Rejections(on_reject))
    with db.session() as s:
        dialect = s.get_bind().dialect.name
        for batch in _batches(read_rows(path, result, delimiter), batch_size):
            _write_batch(s, dialect, lst.id, batch, result)
    return result
