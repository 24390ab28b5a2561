"""Where the files bulkmail ships beside its code are: migrations and bundled templates.

The repository keeps them at its top (``migrations/``, ``templates/``); pyproject.toml maps
them to the packages ``bulkmail.migrations`` and ``bulkmail.templates``, so a wheel carries
them inside ``site-packages/bulkmail/`` and an editable install finds them in the checkout.
Either way ``importlib.resources`` knows where they are; nothing here guesses from
``__file__``. Both are regular packages on a file system (pip and pipx install unpacked), so
the paths are plain folders that Alembic and Jinja2 can read.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from bulkmail.errors import BulkmailError


def _package_dir(package: str) -> Path:
    try:
        root = files(package)
    except ModuleNotFoundError:
        raise BulkmailError(
            f"{package} is missing from this installation: reinstall bulkmail"
        ) from None
    path = Path(str(root))
    if not path.is_dir():
        raise BulkmailError(
            f"{package} is not a folder on disk ({root}): install bulkmail unzipped"
        )
    return path


def migrations_dir() -> Path:
    """The Alembic script folder (``env.py``, ``versions/``)."""
    return _package_dir("bulkmail.migrations")


def templates_dir() -> Path:
    """The folder of bundled templates (``newsletter/``, ``unsubscribe/``, ``sample/``)."""
    return _package_dir("bulkmail.templates")
