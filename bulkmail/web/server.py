"""Running the unsubscribe endpoint: the app for a configuration, served by uvicorn.

The app answers at the path of ``[unsubscribe] url`` (``https://news.example/unsubscribe`` ->
``/unsubscribe/<token>``), the same URL the composer writes into ``List-Unsubscribe``; TLS and
the public host name belong to the reverse proxy in front. The access log is off unless asked
for, because every request line carries a token that can unsubscribe its owner. Slow and
too many clients are bounded by :mod:`bulkmail.web.guard`; repeated log messages are written
once with a count (:mod:`bulkmail.web.logs`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import uvicorn
from starlette.applications import Starlette

from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.errors import ConfigError
from bulkmail.web import guard, logs
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


def build_app(settings: Settings, db: Database, body_timeout: float = 10.0) -> Starlette:
    """The endpoint for ``settings`` over ``db`` (the secret must be set)."""
    from bulkmail.web.metrics import ops_routes
    from bulkmail.web.signup import signup_routes

    secret = settings.secret()
    if settings.signup.url:  # it sends confirmation mail: signed, as the engine's is
        from bulkmail.signing.policy import require_signing

        require_signing(settings)
    routes = [*ops_routes(db), *signup_routes(settings, db, secret, body_timeout)]
    backend = DatabaseBackend(db, secret)
    return create_app(backend, app_path(settings), body_timeout=body_timeout, extra_routes=routes)


def serve(
    settings: Settings,
    db: Database,
    host: str = "127.0.0.1",
    port: int = 8080,
    access_log: bool = False,
    limits: guard.Limits | None = None,
    loop: str = "auto",
) -> None:
    """Serve the endpoint until SIGINT or SIGTERM."""
    limits = limits or guard.Limits()
    app = build_app(settings, db, body_timeout=limits.header_timeout)
    budget = guard.capacity(limits, guard.raise_descriptor_limit())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=guard.protocol(guard.ConnectionGuard(limits, budget)),
        backlog=limits.backlog,
        h11_max_incomplete_event_size=8 * 1024,  # a request head larger than 8 KiB: 400
        lifespan="off",
        access_log=access_log,
        server_header=False,
        log_level="info",
    )
    repeat = logs.install()  # after uvicorn.Config, which installs uvicorn's handlers
    logging.getLogger("uvicorn.error").info(
        "at most %d connections; a request head must arrive within %g s",
        budget,
        limits.header_timeout,
    )
    try:
        _Server(config, repeat).run()
    finally:
        db.dispose()


class _Server(uvicorn.Server):
    """uvicorn's server, writing the counts of held-back log messages when it shuts down
    (uvicorn re-raises SIGTERM after ``run``, so code after it never runs)."""

    def __init__(self, config: uvicorn.Config, repeat: logs.RepeatFilter) -> None:
        super().__init__(config)
        self.repeat = repeat

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        logs.report_pending(self.repeat)
