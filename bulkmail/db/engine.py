"""Engine and session factory, schema upgrade, and the one place SQLAlchemy errors become ours.

SQLite is tuned for one machine with several processes: WAL (readers never block the writer),
a busy timeout (writers wait instead of failing), ``synchronous=NORMAL`` (safe with WAL).
PostgreSQL needs nothing special. ``upgrade()`` runs the Alembic migrations shipped as
``bulkmail.migrations`` (the repository's ``migrations/``), the only way the schema changes;
it is idempotent, so ``bulkmail init`` can be run any time.

Only ``upgrade()`` (``bulkmail init``) creates a SQLite file, owner-only (0600: it holds
subscribers' addresses; SQLite gives its -wal and -shm files the same mode). Every other
command that finds no file stops with one line naming the path and ``bulkmail init``, instead
of SQLite silently creating an empty database somewhere else. Only SQLite and PostgreSQL are
supported; any other URL is one line, and no message ever shows a URL's password.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bulkmail.errors import DatabaseError

SUPPORTED = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
_PASSWORD_IN_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ***."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


def _parse(url: str) -> URL:
    """The parsed URL; plain ``postgresql://`` means psycopg 3, the driver bulkmail ships."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///PATH`` url names; None for memory, URI-style or other databases."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None  # make_engine says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def absolute_sqlite_url(url: str, base_dir: Path) -> str:
    """``url`` with a relative SQLite path made absolute against ``base_dir``.

    A config file's relative paths are relative to its folder, so ``--config /etc/bulkmail.toml``
    from cron finds the same database as an interactive run in ``/etc``.
    """
    path = sqlite_file(url)  # with ~ expanded
    if path is None:
        return url
    absolute = path if path.is_absolute() else (base_dir / path).resolve()
    parsed = make_url(url)
    if parsed.database == str(absolute):
        return url
    return parsed.set(database=str(absolute)).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_functions(dbapi_conn: Any, _record: Any) -> None:
    # PostgreSQL's encode(sha256(...), 'hex') for SQLite: the hashed key of a forgotten
    # address (bulkmail.audience.forget), so suppression checks match it on both databases.
    dbapi_conn.create_function("bulkmail_sha256", 1, _sha256_hex, deterministic=True)


def _sha256_hex(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock at BEGIN: two writers then queue on busy_timeout instead of one
    # failing with "database is locked" when it upgrades a read transaction.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _require_file(path: Path) -> Callable[[Any, Any, Any, Any], None]:
    """A ``do_connect`` hook: refuse to let SQLite create ``path`` (only ``upgrade`` may)."""

    def check(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
        if not path.exists():
            raise DatabaseError(
                f"database {path.resolve()} does not exist: run 'bulkmail init' to create it"
            )
        return None  # let SQLAlchemy connect as usual

    return check


def make_engine(url: str) -> Engine:
    """An Engine for ``url`` (sqlite:///file or postgresql+psycopg://...)."""
    try:
        parsed = _parse(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 30, "isolation_level": None})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "connect", _sqlite_functions)
            event.listen(engine, "begin", _sqlite_begin)
            path = sqlite_file(url)
            if path is not None:
                event.listen(engine, "do_connect", _require_file(path))
        elif backend == "postgresql":
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)
        else:
            raise DatabaseError(f"database url {describe(url)} is not supported: {SUPPORTED}")
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DatabaseError(
            f"database url {describe(url)} is not usable: {redact(str(exc))} ({SUPPORTED})"
        ) from None
    except ImportError as exc:  # a dialect whose driver is not installed
        raise DatabaseError(
            f"database url {describe(url)} needs a driver that is not installed ({exc})"
        ) from None
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def describe(url: str) -> str:
    """The url without its password, for messages (also when it does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return redact(url)


@contextlib.contextmanager
def db_errors(url: str) -> Iterator[None]:
    """Map SQLAlchemy/driver errors to one DatabaseError line (the boundary of this layer)."""
    try:
        yield
    except DBAPIError as exc:
        detail = redact(str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc))
        if exc.connection_invalidated or "connect" in detail.lower() or "unable to open" in detail:
            raise DatabaseError(f"database {describe(url)} is unreachable: {detail}") from None
        if "no such table" in detail or "does not exist" in detail:
            raise DatabaseError(
                f"database {describe(url)} is not initialised: run 'bulkmail init'"
            ) from None
        raise DatabaseError(f"database {describe(url)}: {detail}") from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database {describe(url)}: {redact(str(exc))}") from None


class Database:
    """An engine plus a session factory; the object every stage receives."""

    # Where the sessions' state changes also go as webhook events (webhooks.outbox.Targets,
    # set by webhooks.outbox.enable when [webhooks] urls is configured); None: nowhere.
    outbox: Any = None

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
            session.info["outbox"] = self.outbox
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


def create_sqlite_file(url: str) -> Path | None:
    """Create the SQLite file ``url`` names, owner-only; the path if it was made here, else None.

    0600 whatever the umask: the file holds subscribers' addresses. SQLite gives the -wal and
    -shm files it makes later the mode of the database file.
    """
    path = sqlite_file(url)
    if path is None or path.exists():
        return None
    if not path.parent.is_dir():
        raise DatabaseError(f"database {path}: folder {path.parent} does not exist")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return None  # another init made it a moment ago: theirs, not ours to remove
    except OSError as exc:
        raise DatabaseError(f"database {path}: cannot create: {exc.strerror}") from None
    return path


def _remove_sqlite_files(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()


def upgrade(db: Database, revision: str = "head") -> str:
    """Bring the schema to ``revision`` with Alembic; returns the revision now current.

    Creates a missing SQLite file (see ``create_sqlite_file``); if the upgrade then fails, the
    file is removed again, so a failed ``init`` leaves no empty database behind.
    """
    created = create_sqlite_file(db.url)
    try:
        return _migrate(db, revision)
    except BaseException:
        if created is not None:
            db.dispose()
            _remove_sqlite_files(created)
        raise


def _migrate(db: Database, revision: str) -> str:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    from bulkmail.resources import migrations_dir

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with db_errors(db.url), db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        before = MigrationContext.configure(conn).get_current_revision()
        try:
            command.upgrade(cfg, revision)
        except (CommandError, DBAPIError) as exc:  # an unknown revision, a failing statement
            orig = getattr(exc, "orig", None) or exc
            detail = redact(" ".join(str(orig).split()))
            if isinstance(exc, CommandError) and "Can't locate revision" in detail:
                detail += " (written by a newer bulkmail? upgrade bulkmail)"
            raise DatabaseError(
                f"database {describe(db.url)}: schema upgrade from revision {before or 'none'}"
                f" to {revision} failed: {detail}"
            ) from None
        conn.commit()
        current = MigrationContext.configure(conn).get_current_revision()
    return current or ""


def now() -> float:
    """The clock every stored time uses (UNIX seconds, UTC)."""
    return time.time()
