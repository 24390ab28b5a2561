"""The double opt-in sign-up form of ``bulkmail serve``: form, confirmation mail, confirm page.

``GET <path>/<list>`` shows the form of a list created with ``--double-opt-in``;
``POST <path>/<list>`` checks the honeypot field and the client's rate, then mails a signed
link (``bulkmail.audience.signup``) through the configured sending path (MX or relay, DKIM
signed as campaigns are). Every accepted or silently dropped POST gets the same "check your
inbox" page, so the form tells nobody whether an address is subscribed. ``GET
<path>/confirm/<token>`` only shows a button; its ``POST`` adds the member: mail scanners
that open every link do not subscribe anyone.

The rate limit is per client IP (behind a reverse proxy on this host, uvicorn takes the
address from its ``X-Forwarded-For``), in memory: ``rate_limit`` POSTs per ``rate_window``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import deque
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bulkmail.audience.addresses import InvalidAddress, normalize_address
from bulkmail.audience.signup import (
    SignupRequest,
    confirm,
    make_token,
    read_token,
    signup_list,
)
from bulkmail.compose.render import bundled_templates_dir
from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.errors import BulkmailError, DeliveryError
from bulkmail.web.app import HEADERS, _field, _form, _read_body, mask_email

log = logging.getLogger(__name__)

HONEYPOT = "website"
MAX_KEYS = 100_000  # client addresses remembered by the rate limiter at most


class RateLimiter:
    """At most ``limit`` hits per key within ``window`` seconds (sliding window)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self.hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        hits = self.hits.setdefault(key, deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self.hits) > MAX_KEYS:  # forget the quiet ones first
            for k in [k for k, h in self.hits.items() if not h or now - h[-1] >= self.window]:
                del self.hits[k]
        return True


def confirmation_mail(settings: Settings, to: str, list_name: str, link: str) -> tuple[str, bytes]:
    """(envelope sender, the signed message) asking ``to`` to open ``link``."""
    from bulkmail.delivery.pipeline import load_signers
    from bulkmail.signing.dkim import sign_all

    signup = settings.signup
    _, from_addr = email.utils.parseaddr(signup.from_address)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = signup.from_address
    msg["To"] = to
    msg["Subject"] = signup.subject.replace("{list}", list_name)
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=from_addr.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"Someone, hopefully you, asked to subscribe {to} to {list_name}.\n\n"
        f"To confirm, open this link and press the button on the page:\n\n{link}\n\n"
        "If it was not you, ignore this message: nothing happens without the confirmation.\n"
    )
    signers = load_signers(settings)
    data = msg.as_bytes()
    data = sign_all(signers, data) if signers else data
    domain = settings.sender.return_path_domain
    return (f"bounces@{domain}" if domain else from_addr), data


async def deliver(settings: Settings, sender: str, recipient: str, data: bytes) -> None:
    """Send one message through the configured routing and transport; DeliveryError if not."""
    from bulkmail.delivery.transport import Connector, Outcome
    from bulkmail.delivery.wiring import make_router, transport_settings

    domain = recipient.rpartition("@")[2]
    route = await make_router(settings).route(domain)
    if route.reply is not None:
        raise DeliveryError(f"sign-up mail to {domain}: no route: {route.reply}")
    opened = await Connector(transport_settings(settings)).open(route.hosts)
    if isinstance(opened, Outcome):
        raise DeliveryError(f"sign-up mail to {domain}: cannot connect: {opened.reply}")
    try:
        outcome = await opened.send(sender, recipient, data, smtputf8=not recipient.isascii())
    finally:
        await opened.close()
    if not 200 <= outcome.reply.code < 300:
        raise DeliveryError(f"sign-up mail to {domain}: refused: {outcome.reply}")


def signup_routes(
    settings: Settings,
    db: Database,
    secret: bytes,
    body_timeout: float = 10.0,
    send: Callable[..., Any] = deliver,
) -> list[Route]:
    """The sign-up routes under the path of ``[signup] url``; none when it is not set."""
    config = settings.signup
    if not config.url:
        return []
    base = (urlsplit(config.url).path or "/").rstrip("/")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(
            [bundled_templates_dir() / "signup", bundled_templates_dir() / "unsubscribe"]
        ),
        autoescape=True,
    )
    limiter = RateLimiter(config.rate_limit, config.rate_window)

    def page(view: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("list_name", "")
        html = env.get_template("page.html").render(view=view, **context)
        return HTMLResponse(html, status_code=status, headers=dict(HEADERS))

    async def form(request: Request) -> Response:
        lst = await run_in_threadpool(signup_list, db, request.path_params["list"])
        if lst is None:
            return page("invalid", 404)
        return page("form", list_name=lst.name)

    async def submit(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        try:
            async with asyncio.timeout(body_timeout):
                body = await _read_body(request)
        except TimeoutError:
            return page("error", 408)
        fields = await _form(request, body) if body is not None else None
        if fields is None:
            return page("error", 400)
        lst = await run_in_threadpool(signup_list, db, request.path_params["list"])
        if lst is None:
            return page("invalid", 404)
        if not limiter.allow(client):
            return page("limited", 429)
        if _field(fields, HONEYPOT):  # a bot: it learns nothing, nobody is mailed
            log.info("sign-up to %s: honeypot filled, dropped", lst.name)
            return page("sent", list_name=lst.name)
        raw = (_field(fields, "email") or "").strip()
        try:
            address = normalize_address(raw)
        except InvalidAddress:
            return page("form", 400, list_name=lst.name, problem="Please enter a valid address.")
        name = (_field(fields, "name") or "").strip()[:200]
        request_ = SignupRequest(lst.id, address.email, name, int(time.time()))
        link = f"{config.url.rstrip('/')}/confirm/{make_token(secret, request_)}"
        sender, data = confirmation_mail(settings, address.email, lst.name, link)
        try:
            await send(settings, sender, address.email, data)
        except BulkmailError as exc:
            log.warning("sign-up to %s: %s", lst.name, exc)
            return page("error", 503)
        return page("sent", list_name=lst.name)

    def _request(token: str) -> tuple[SignupRequest | None, Any]:
        req = read_token(secret, token, time.time(), config.confirm_within)
        if req is None:
            return None, None
        from bulkmail.db.models import MailingList

        with db.session() as s:
            lst = s.get(MailingList, req.list_id)
        return (req, lst) if lst is not None and lst.double_opt_in else (None, None)

    async def confirm_page(request: Request) -> Response:
        req, lst = await run_in_threadpool(_request, request.path_params["token"])
        if req is None:
            return page("invalid", 404)
        return page("confirm", list_name=lst.name, email=mask_email(req.email))

    async def confirm_post(request: Request) -> Response:
        req, _ = await run_in_threadpool(_request, request.path_params["token"])
        if req is None:
            return page("invalid", 404)
        address = normalize_address(req.email)
        done = await run_in_threadpool(confirm, db, req, address, time.time())
        if done is None:
            return page("invalid", 404)
        return page("done", list_name=done.list_name, email=mask_email(done.email))

    return [
        Route(f"{base}/confirm/{{token}}", confirm_page, methods=["GET"]),
        Route(f"{base}/confirm/{{token}}", confirm_post, methods=["POST"]),
        Route(f"{base}/{{list}}", form, methods=["GET"]),
        Route(f"{base}/{{list}}", submit, methods=["POST"]),
    ]
