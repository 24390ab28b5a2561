"""Dialect-specific INSERT ... ON CONFLICT, the one place SQLite and PostgreSQL differ in syntax."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(dialect: str, table: Table) -> Any:
    """An INSERT construct that supports ``on_conflict_do_nothing/do_update`` on ``dialect``."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)
