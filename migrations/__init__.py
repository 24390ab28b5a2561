"""Alembic migrations, shipped in the wheel as ``bulkmail.migrations`` (see pyproject.toml).

A package only so that setuptools and ``importlib.resources`` can carry and find it; Alembic
reads ``env.py`` and ``versions/`` from the folder (``bulkmail.resources.migrations_dir``).
"""
