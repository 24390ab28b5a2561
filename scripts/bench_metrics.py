"""Measure what one /metrics scrape costs on a large database (the queries, not HTTP).

    python scripts/bench_metrics.py --rows 1000000 [--url postgresql+psycopg://...]

Creates a scratch database (a SQLite file in a temporary folder, or the given PostgreSQL
database, which must be empty and migrated), fills one running campaign with ``--rows``
deliveries over 1,000 domains (80% sent, 10% queued, 5% deferred, 5% bounced) and a send's
worth of recent events, then times ``bulkmail.web.metrics.snapshot`` (best of 3).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bulkmail.db.engine import Database, upgrade
from bulkmail.web.metrics import snapshot


def fill(db: Database, rows: int, now: float) -> None:
    rng = random.Random(1)
    with db.session() as s:
        s.execute(text("INSERT INTO lists (id, name, created_at) VALUES (1, 'l', 0)"))
        s.execute(
            text(
                "INSERT INTO campaigns (id, name, subject, from_header, template, list_id, state,"
                " state_reason, enqueued, created_at, failure_streak)"
                " VALUES (1, 'c', 's', 'f', 't', 1, 'running', '', true, 0, 0)"
            )
        )
    states = ["sent"] * 16 + ["queued"] * 2 + ["deferred", "bounced"]
    batch = 50_000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        with db.session() as s:
            s.execute(
                text(
                    "INSERT INTO subscribers (id, email, email_key, domain, name, attributes,"
                    " created_at, updated_at) VALUES (:id, :e, :e, :d, '', '{}', 0, 0)"
                ),
                [
                    {"id": i, "e": f"u{i}@d{i % 1000}.test", "d": f"d{i % 1000}.test"}
                    for i in range(start + 1, start + n + 1)
                ],
            )
            s.execute(
                text(
                    "INSERT INTO deliveries (campaign_id, subscriber_id, email, domain, state,"
                    " attempts, next_attempt_at, created_at, updated_at)"
                    " VALUES (1, :id, :e, :d, :st, 1, :t, 0, 0)"
                ),
                [
                    {
                        "id": i,
                        "e": f"u{i}@d{i % 1000}.test",
                        "d": f"d{i % 1000}.test",
                        "st": rng.choice(states),
                        "t": now,
                    }
                    for i in range(start + 1, start + n + 1)
                ],
            )
            s.execute(
                text(
                    "INSERT INTO events (kind, campaign_id, delivery_id, code, enhanced, mx_host,"
                    " source, created_at) VALUES (:k, 1, :id, 451, '4.7.1', :mx, 'engine', :t)"
                ),
                [
                    {
                        "k": "deferred" if i % 10 == 0 else "sent",
                        "id": i,
                        "mx": f"mx.d{i % 50}.test",
                        "t": now - rng.uniform(0, 7200),
                    }
                    for i in range(start + 1, start + n + 1)
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    if not args.url:
        Path(tmp.name, "bench.db").touch()
    db = Database(url)
    upgrade(db)
    now = time.time()
    t0 = time.perf_counter()
    fill(db, args.rows, now)
    print(f"filled {args.rows} deliveries and events in {time.perf_counter() - t0:.1f} s")
    if not db.sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    best = min(_timed(db, now) for _ in range(3))
    print(f"{'sqlite' if db.sqlite else 'postgresql'}: snapshot of {args.rows} rows: {best:.2f} s")
    db.dispose()


def _timed(db: Database, now: float) -> float:
    started = time.perf_counter()
    snapshot(db, now)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
