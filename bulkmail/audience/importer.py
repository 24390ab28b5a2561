"""CSV audience import: streamed, validated, idempotent.

Two passes over the file. The first reads it through without touching the database, so a file
that is not UTF-8, is not CSV or has no ``email`` column changes nothing. The second upserts
subscribers in batches (each batch its own transaction, so a million rows never hold one
long write lock) and adds them to the list. Re-running an import, interrupted or not, updates
rather than duplicates; a member who unsubscribed stays unsubscribed.

Every rejected row is reported with its line number and reason; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bulkmail.audience.addresses import InvalidAddress, normalize_address
from bulkmail.audience.lists import find_list
from bulkmail.db.engine import Database, now
from bulkmail.db.models import SUBSCRIBED, Membership, Subscriber
from bulkmail.db.upsert import insert_for
from bulkmail.errors import InputError

BATCH = 5000
csv.field_size_limit(1 << 20)


@dataclass
class Rejection:
    line: int
    email: str
    reason: str


@dataclass
class ImportResult:
    imported: int = 0
    updated: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
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


def _header(path: Path, reader: Any) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(
            f"{path}: empty file, expected a header row with an 'email' column"
        ) from None
    names = [h.strip().lower() for h in header]
    if "email" not in names:
        shown = ", ".join(header[:5]) if header else "nothing"
        raise InputError(f"{path}: line 1: no 'email' column in the header (found: {shown})")
    dupes = {n for n in names if names.count(n) > 1 and n}
    if dupes:
        raise InputError(f"{path}: line 1: column {sorted(dupes)[0]!r} appears twice")
    return names


def check_file(path: Path) -> None:
    """Pass 1: the whole file decodes as UTF-8 and parses as CSV with an email column."""
    with _open(path) as fh:
        reader = csv.reader(fh, strict=True)
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
            raise InputError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None


def read_rows(path: Path, result: ImportResult) -> Iterator[Row]:
    """Pass 2: valid rows, in file order; invalid ones are appended to ``result.rejected``."""
    with _open(path) as fh:
        reader = csv.reader(fh)
        names = _header(path, reader)
        width = len(names)
        email_at = names.index("email")
        name_at = names.index("name") if "name" in names else -1
        extra = [(i, n) for i, n in enumerate(names) if i not in (email_at, name_at) and n]
        for values in reader:
            line = reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # a blank line is not a row
            if len(values) != width:
                raw = values[email_at] if len(values) > email_at else ""
                result.rejected.append(
                    Rejection(line, raw, f"expected {width} fields, found {len(values)}")
                )
                continue
            try:
                addr = normalize_address(values[email_at])
            except InvalidAddress as exc:
                result.rejected.append(Rejection(line, values[email_at], str(exc)))
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


def _write_batch(db: Database, list_id: int, batch: list[Row], result: ImportResult) -> None:
    latest: dict[str, Row] = {}
    for row in batch:  # a duplicate inside the file (in any case): the later row wins
        if row.key in latest:
            result.updated += 1
        latest[row.key] = row
    stamp = now()
    dialect = db.engine.dialect.name
    with db.session() as s:
        existing = dict(
            s.execute(
                select(Subscriber.email_key, Subscriber.id).where(
                    Subscriber.email_key.in_(list(latest))
                )
            ).all()
        )
        result.updated += len(existing)
        result.imported += len(latest) - len(existing)
        table = Subscriber.__table__
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
        mstmt = insert_for(dialect, Membership.__table__).on_conflict_do_nothing()
        s.execute(
            mstmt,
            [
                {"list_id": list_id, "subscriber_id": i, "status": SUBSCRIBED, "updated_at": stamp}
                for i in ids
            ],
        )


def import_csv(db: Database, list_name: str, path: Path, batch_size: int = BATCH) -> ImportResult:
    """Import ``path`` into the list ``list_name``; see the module docstring for the guarantees."""
    path = Path(path)
    lst = find_list(db, list_name)
    check_file(path)
    result = ImportResult()
    for batch in _batches(read_rows(path, result), batch_size):
        _write_batch(db, lst.id, batch, result)
    return result
