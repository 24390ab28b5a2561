"""Streaming the event log out (CSV or JSON Lines) for a spreadsheet or a data warehouse.

The log can hold hundreds of millions of rows, so it is read in keyset batches
(``id > last ORDER BY id LIMIT n``, listmonk's way, never OFFSET), each batch in its own short
transaction, and written as it is read: memory stays the size of one batch however many events
there are, and a long export never holds a transaction open against the senders.
``bench_export`` measures that on n synthetic events (rows per second, peak RSS).

CSV cells are made safe for spreadsheets (OWASP, "CSV Injection"): a text cell starting with
``=`` ``+`` ``-`` ``@``, tab or CR, such as a bounce reason ``=HYPERLINK(...)`` a remote server
wrote, or an address ``-x@example.com``, gets a leading ``'`` so that Excel, LibreOffice and
Sheets show it as text instead of running it as a formula. Numbers are left as they are, and
JSON Lines stays exact: it is read by programs, not spreadsheets.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import re
import resource
import time
from typing import Any, TextIO

from sqlalchemy import text

from bulkmail.db.engine import Database
from bulkmail.errors import InputError

BATCH = 5000
FORMATS = ("csv", "jsonl")
COLUMNS = (
    "id",
    "created_at",
    "time",
    "kind",
    "campaign_id",
    "delivery_id",
    "subscriber_id",
    "email",
    "code",
    "enhanced",
    "text",
    "mx_host",
    "attempt",
    "source",
)
_SELECT = (
    "id, created_at, kind, campaign_id, delivery_id, subscriber_id, email, code, "
    "enhanced, text, mx_host, attempt, source"
)
_RELATIVE = re.compile(r"(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+")
FORMULA_STARTS = frozenset("=+-@\t\r")  # OWASP: a cell starting so may run as a formula


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet will not run: text that could start a formula
    gets a leading ``'`` (OWASP); anything else, numbers included, is returned as it is."""
    if value.__class__ is str and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def spreadsheet_value(cell: str) -> str:
    """The value :func:`spreadsheet_safe` was given, from the cell it wrote (for imports)."""
    if cell[:1] == "'" and cell[1:2] in FORMULA_STARTS:
        return cell[1:]
    return cell


def parse_since(value: str, now: float) -> float:
    """A UNIX time from ``--since``: "2h" / "3d" / "1h30m" (that long before ``now``), an ISO
    date or date-time ("2025-05-01", "2025-05-01T09:00", UTC unless it carries an offset),
    or UNIX seconds ("1714554000")."""
    raw = value.strip()
    if _RELATIVE.fullmatch(raw.lower()):
        from bulkmail.delivery.retry import parse_duration

        return now - parse_duration(raw)
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--since {value!r}: expected e.g. '2h', '3d', '2025-05-01', "
            "'2025-05-01T09:00' or UNIX seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _batches(db: Database, campaign_id: int | None, since: float | None, batch: int) -> Any:
    """Rows of the event log in id order, ``batch`` at a time, each in a short transaction."""
    where, params = ["id > :last"], {"limit": batch}
    if campaign_id is not None:
        where.append("campaign_id = :cid")
        params["cid"] = campaign_id
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = since  # type: ignore[assignment]
    sql = text(f"SELECT {_SELECT} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit")
    last = 0
    if since is not None:  # start at the first recent event (ix_events_created), not at id 1
        with db.session() as s:
            first = s.execute(
                text("SELECT MIN(id) FROM events WHERE created_at >= :since"), {"since": since}
            ).scalar()
        if first is None:
            return
        last = first - 1
    while True:
        with db.session() as s:
            rows = s.execute(sql, {**params, "last": last}).all()
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        last = rows[-1][0]


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _iso(t: float | None) -> str | None:
    """UTC ISO 8601 with milliseconds ("2025-05-01T09:00:00.250+00:00"), for spreadsheets."""
    if t is None:
        return None
    millis = round(t * 1000)
    second, ms = divmod(millis, 1000)
    return f"{_iso_second(second)}.{ms:03d}+00:00"


def export_events(
    db: Database,
    out: TextIO,
    campaign_id: int | None = None,
    since: float | None = None,
    fmt: str = "csv",
    batch: int = BATCH,
) -> int:
    """Write the events (of one campaign, from ``since`` on) to ``out`` in id order, as CSV with
    a header row or as JSON Lines; returns how many were written. Memory: one batch."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    count = 0
    for rows in _batches(db, campaign_id, since, batch):
        if writer is not None:
            safe = spreadsheet_safe
            writer.writerows((r[0], r[1], _iso(r[1]), *[safe(v) for v in r[2:]]) for r in rows)
        else:
            out.writelines(
                json.dumps(
                    dict(zip(COLUMNS, (r[0], r[1], _iso(r[1]), *r[2:]), strict=True)),
                    ensure_ascii=False,
                )
                + "\n"
                for r in rows
            )
        count += len(rows)
    return count


# -- The benchmark ------------------------------------------------------------------------------

BENCH_CAMPAIGN = 2_000_000_000  # events of no real campaign; removed after the run
BENCH_SOURCE = "bench"


def _insert_synthetic(db: Database, n: int, now: float) -> None:
    """n events made by the database itself (a recursive CTE / generate_series): no rows cross
    into Python, so inserting does not disturb the memory measurement."""
    columns = (
        "kind, campaign_id, delivery_id, subscriber_id, email, code, enhanced, text, "
        "mx_host, attempt, source, created_at"
    )
    values = (
        f"CASE WHEN x % 3 = 0 THEN 'bounced' ELSE 'deferred' END, {BENCH_CAMPAIGN}, x, x, "
        "'user' || x || '@example.test', CASE WHEN x % 3 = 0 THEN 550 ELSE 451 END, "
        "CASE WHEN x % 3 = 0 THEN '5.1.1' ELSE '4.7.1' END, "
        "'synthetic reply for a benchmark of the export', 'mx.example.test', 1, "
        f"'{BENCH_SOURCE}', :now + x * 0.001"
    )
    if db.sqlite:
        sql = (
            f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n) "
            f"INSERT INTO events ({columns}) SELECT {values} FROM g"
        )
    else:
        sql = f"INSERT INTO events ({columns}) SELECT {values} FROM generate_series(1, :n) AS g(x)"
    with db.session() as s:
        s.execute(text(sql), {"n": n, "now": now})
    if db.sqlite:  # read from the database file, as a settled log would be, not a huge WAL
        raw = db.engine.raw_connection()  # outside a transaction (ours begin IMMEDIATE)
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            raw.close()


def bench_export(db_url: str, n: int = 1_000_000, fmt: str = "csv") -> dict[str, Any]:
    """Insert ``n`` synthetic events into the (initialised) database at ``db_url``, export them
    to /dev/null, delete them, and return the figures: rows, seconds, rows_per_second,
    rss_before_mb and peak_rss_mb (the process's peak RSS, from getrusage), rss_growth_mb."""
    db = Database(db_url)
    try:
        db.check_ready()
        started = time.perf_counter()
        _insert_synthetic(db, n, time.time())
        inserted = time.perf_counter() - started
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with open("/dev/null", "w", encoding="utf-8") as sink:
            rows = export_events(db, sink, campaign_id=BENCH_CAMPAIGN, fmt=fmt)
        seconds = time.perf_counter() - started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with db.session() as s:
            s.execute(
                text("DELETE FROM events WHERE campaign_id = :cid AND source = :src"),
                {"cid": BENCH_CAMPAIGN, "src": BENCH_SOURCE},
            )
    finally:
        db.dispose()
    return {
        "events": n,
        "rows": rows,
        "format": fmt,
        "insert_seconds": round(inserted, 3),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
        "rss_before_mb": round(rss_before / 1024, 1),
        "peak_rss_mb": round(rss_peak / 1024, 1),
        "rss_growth_mb": round((rss_peak - rss_before) / 1024, 1),
    }
