"""Engine and session factory, schema upgrade, and the one place SQLAlchemy errors become ours.

SQLite is tuned for one machine with several processes: WAL (readers never block the writer),
a busy timeout (writers wait instead of failing), ``synchronous=NORMAL`` (safe with WAL).
PostgreSQL needs nothing special. ``upgrade()`` runs the Alembic migrations in ``migrations/``,
the only way the schema changes; it is idempotent, so ``bulkmail init`` can be run any time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bulkmail.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # Take the write lock at BEGIN: two writers then queue on busy_timeout instead of one
    # failing with "database is locked" when it upgrades a read transaction.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An Engine for ``url`` (sqlite:///file or postgresql+psycopg://...)."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DatabaseError(f"database url {url!r} is not usable: {exc}") from None
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def describe(url: str) -> str:
    """The url without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<bad url>"


@contextlib.contextmanager
def db_errors(url: str) -> Iterator[None]:
    """Map SQLAlchemy/driver errors to one DatabaseError line (the boundary of this layer)."""
    try:
        yield
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if exc.connection_invalidated or "connect" in detail.lower() or "unable to open" in detail:
            raise DatabaseError(f"database {describe(url)} is unreachable: {detail}") from None
        if "no such table" in detail or "does not exist" in detail:
            raise DatabaseError(
                f"database {describe(url)} is not initialised: run 'bulkmail init'"
            ) from None
        raise DatabaseError(f"database {describe(url)}: {detail}") from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database {describe(url)}: {exc}") from None


class Database:
    """An engine plus a session factory; the object every stage receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.engine)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""
        with db_errors(self.url), self.sessions.begin() as session:
            yield session

    def check_ready(self) -> None:
        """Raise a clear DatabaseError when the database is unreachable or has no schema."""
        with db_errors(self.url), self.engine.connect() as conn:
            if not inspect(conn).has_table("deliveries"):
                raise DatabaseError(
                    f"database {describe(self.url)} is not initialised: run 'bulkmail init'"
                )

    def dispose(self) -> None:
        self.engine.dispose()


def upgrade(db: Database, revision: str = "head") -> str:
    """Bring the schema to ``revision`` with Alembic; returns the revision now current."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db_errors(db.url), db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
        current = MigrationContext.configure(conn).get_current_revision()
    return current or ""


def now() -> float:
    """The clock every stored time uses (UNIX seconds, UTC)."""
    return time.time()
