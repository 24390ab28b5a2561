"""Database fixtures: every database test runs on SQLite and on PostgreSQL.

``db_url`` is parametrised over both backends. SQLite gets a new file per test. PostgreSQL
(127.0.0.1:5432, trust auth; override with $BULKMAIL_TEST_PG) gets one scratch database per
test session, migrated once, and its tables emptied before each test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bulkmail.db.engine import Database, upgrade

PG_ADMIN = os.environ.get(
    "BULKMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TABLES = (
    "events",
    "deliveries",
    "campaigns",
    "memberships",
    "subscribers",
    "suppressions",
    "lists",
    "mta_sts_policies",
    "site_leases",
    "workers",
    "outbox",
    "site_actions",
)


def _pg_available() -> bool:
    try:
        with create_engine(PG_ADMIN).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this test session, migrated to head."""
    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} (the suite needs it)")
    name = f"bulkmail_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    db = Database(url)
    upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bulkmail.db'}"
        db = Database(url)
        upgrade(db)
        db.dispose()
        return url
    url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()
