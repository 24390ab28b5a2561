"""Alembic environment: runs on the connection bulkmail passes in (``bulkmail init``), or on
``sqlalchemy.url`` / ``$BULKMAIL_DATABASE_URL`` when the alembic command line is used."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from bulkmail.db.models import Base

target_metadata = Base.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("BULKMAIL_DATABASE_URL") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
