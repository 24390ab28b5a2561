"""The unsubscribe endpoint (RFC 8058): a small Starlette app, one route.

``POST <path>/<token>`` with the body ``List-Unsubscribe=One-Click`` (form-encoded or
multipart) unsubscribes at once and answers 200: no cookie, no login, no redirect, because a
mailbox provider posts it on the user's behalf. ``GET`` only shows a confirmation page whose
button posts that same body, and never changes anything: link scanners prefetch every URL in
a message. A forged, truncated or unknown token gets the same 404 page whatever was wrong,
and no page ever repeats the token (it sits only in the URL).

Every answer carries ``Cache-Control: no-store`` and headers that keep the token out of
Referer and out of frames. The app talks to storage through :class:`Backend` (two calls), so
its HTTP behaviour is tested without a database; :class:`DatabaseBackend` is the real one,
and its blocking calls run in Starlette's threadpool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bulkmail.audience.unsubscribe import (
    Target,
    UnsubscribeOutcome,
    target_of_token,
    unsubscribe_token,
)
from bulkmail.compose.render import bundled_templates_dir
from bulkmail.db.engine import Database
from bulkmail.errors import BulkmailError

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # a one-click body is 26 bytes; a browser form a few hundred
BODY_TIMEOUT = 10.0  # seconds for the whole body: a client trickling it holds a connection
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
SOURCE_ONE_CLICK = "one-click"  # a POST from a mail client (RFC 8058)
SOURCE_PAGE = "page"  # the confirmation page's button
HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class Backend(Protocol):
    """What the app needs from storage; both calls block and take the raw token."""

    def lookup(self, token: str) -> Target | None: ...

    def unsubscribe(self, token: str, source: str) -> UnsubscribeOutcome | None: ...


class DatabaseBackend:
    """The Backend over the campaign database."""

    def __init__(self, db: Database, secret: bytes) -> None:
        self.db = db
        self.secret = secret

    def lookup(self, token: str) -> Target | None:
        return target_of_token(self.db, self.secret, token)

    def unsubscribe(self, token: str, source: str) -> UnsubscribeOutcome | None:
        return unsubscribe_token(self.db, self.secret, token, source)


def route_path(url: str) -> str:
    """The route of the ``[unsubscribe] url``: its path, with ``{token}`` appended if absent."""
    path = urlsplit(url).path or "/"
    if "{token}" not in path:
        path = path.rstrip("/") + "/{token}"
    return path


def mask_email(email: str) -> str:
    """``j…@example.com``: enough for its owner to recognise, little for anyone else."""
    local, at, domain = email.rpartition("@")
    return f"{local[:1]}…{at}{domain}" if at else "…"


class _Pages:
    """The HTML pages under ``templates/unsubscribe``, autoescaped."""

    def __init__(self, directory: Path) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def render(self, name: str, status: int, **context: Any) -> Response:
        html = self.env.get_template(name).render(**context)
        headers = dict(HEADERS)
        if status == 503:
            headers["Retry-After"] = "60"
        return HTMLResponse(html, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request, body: bytes) -> FormData | dict[str, list[str]] | None:
    """The fields of the body: form-encoded, multipart, or (no usable type) read as form-encoded."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in FORM_TYPES:
        try:
            return parse_qs(body.decode("ascii"), max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return None
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=0, max_fields=20)
    except (HTTPException, MultiPartException, ValueError):
        return None


def _is_one_click(fields: FormData | dict[str, list[str]]) -> bool:
    if isinstance(fields, FormData):
        values = [v for v in fields.getlist("List-Unsubscribe") if isinstance(v, str)]
    else:
        values = fields.get("List-Unsubscribe", [])
    return "One-Click" in values


def create_app(
    backend: Backend,
    path: str = "/unsubscribe/{token}",
    templates_dir: Path | None = None,
    body_timeout: float = BODY_TIMEOUT,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app answering at ``path`` (a Starlette route path containing ``{token}``),
    plus ``extra_routes`` (``/healthz``, ``/metrics``), matched first.
    A body that has not arrived within ``body_timeout`` seconds gets 408."""
    pages = _Pages(templates_dir or bundled_templates_dir() / "unsubscribe")

    async def call(func: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(func, *args)
        except BulkmailError as exc:
            log.error("unsubscribe: %s", exc)
            raise _Unavailable() from None

    async def confirm(request: Request) -> Response:
        target = await call(backend.lookup, request.path_params["token"])
        if target is None:
            return pages.render("invalid.html", 404)
        return pages.render(
            "confirm.html",
            200,
            list_name=target.list_name,
            email=mask_email(target.email),
            subscribed=target.subscribed,
        )

    async def one_click(request: Request) -> Response:
        try:
            async with asyncio.timeout(body_timeout):
                body = await _read_body(request)
        except TimeoutError:
            return pages.render("error.html", 408, problem="bad_request")
        if body is None:
            return pages.render("error.html", 413, problem="too_large")
        fields = await _form(request, body)
        if fields is None or not _is_one_click(fields):
            return pages.render("error.html", 400, problem="bad_request")
        source = SOURCE_PAGE if _field(fields, "via") == SOURCE_PAGE else SOURCE_ONE_CLICK
        outcome = await call(backend.unsubscribe, request.path_params["token"], source)
        if outcome is None:
            return pages.render("invalid.html", 404)
        return pages.render(
            "done.html",
            200,
            list_name=outcome.target.list_name,
            email=mask_email(outcome.target.email),
        )

    async def unavailable(request: Request, exc: Exception) -> Response:
        return pages.render("error.html", 503, problem="unavailable")

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code != 404:
            headers = {**HEADERS, **(exc.headers or {})}
            return PlainTextResponse(exc.detail, exc.status_code, headers=headers)
        return pages.render("invalid.html", 404)

    return Starlette(
        routes=[
            *extra_routes,
            Route(path, confirm, methods=["GET"]),
            Route(path, one_click, methods=["POST"]),
        ],
        exception_handlers={_Unavailable: unavailable, HTTPException: http_error},
    )


def _field(fields: FormData | dict[str, list[str]], name: str) -> str | None:
    if isinstance(fields, FormData):
        value = fields.get(name)
        return value if isinstance(value, str) else None
    values = fields.get(name)
    return values[0] if values else None


class _Unavailable(Exception):
    """The backend failed (database down): answer 503 so the mail client tries again."""
