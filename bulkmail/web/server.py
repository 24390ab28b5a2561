"""Running the unsubscribe endpoint: the app for a configuration, served by uvicorn.

The app answers at the path of ``[unsubscribe] url`` (``https://news.example/unsubscribe`` ->
``/unsubscribe/<token>``), the same URL the composer writes into ``List-Unsubscribe``; TLS and
the public host name belong to the reverse proxy in front. The access log is off unless asked
for, because every request line carries a token that can unsubscribe its owner.
"""

from __future__ import annotations

import re

import uvicorn
from starlette.applications import Starlette

from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.errors import ConfigError
from bulkmail.web.app import DatabaseBackend, create_app, route_path

_URL_RE = re.compile(r"https?://[^/\s?#{}]+(/[^\s?#{}]*(\{token\}[^\s?#{}]*)?)?")


def app_path(settings: Settings) -> str:
    """The route path of the endpoint, from ``[unsubscribe] url``; ConfigError if unusable."""
    url = settings.unsubscribe.url
    if not _URL_RE.fullmatch(url):
        raise ConfigError(
            f"{settings.source}: unsubscribe.url: not a plain http(s) URL "
            f"(with at most one {{token}}, no query): {url!r}"
        )
    return route_path(url)


def build_app(settings: Settings, db: Database) -> Starlette:
    """The endpoint for ``settings`` over ``db`` (the secret must be set)."""
    return create_app(DatabaseBackend(db, settings.secret()), app_path(settings))


def serve(
    settings: Settings,
    db: Database,
    host: str = "127.0.0.1",
    port: int = 8080,
    access_log: bool = False,
) -> None:
    """Serve the endpoint until SIGINT or SIGTERM."""
    app = build_app(settings, db)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        access_log=access_log,
        server_header=False,
        log_level="info",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        db.dispose()
