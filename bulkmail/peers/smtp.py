"""A scripted SMTP server for tests, the demo and the benchmark, on aiosmtpd.

bulkmail's delivery code must cope with what real MX hosts do: reject some recipients,
greylist, defer or refuse the message after the final dot, hang up in the middle, answer
slowly, refuse the connection, require TLS or AUTH. ``SmtpServer`` is a real SMTP server
(aiosmtpd's protocol, its own asyncio loop in a background thread) whose misbehaviour a test
picks in one line with a ``Script``, and which records what it accepted (``messages``) and
how many sessions were open at once (counted on connection made / lost, at the server).

``Received.data`` is the message exactly as it crossed the wire after dot-unstuffing: CRLF line
ends, bytes untouched (aiosmtpd's ``original_content`` with ``decode_data=False``), so DKIM
signatures verify on it. Binding any 127.0.0.x address needs no setup on Linux, so a test runs
one server per MX host on 127.0.0.2, 127.0.0.3, … with the same port (see ``free_port``).
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bulkmail.peers import Peer

__all__ = ["Received", "Script", "SmtpServer", "free_port"]

_BACKLOG = 512
_DEFAULT_SIZE_LIMIT = 2**25


@dataclass
class Received:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # exact bytes after dot-unstuffing, CRLF line ends
    peer_ip: str
    tls: bool
    authenticated: str | None  # the AUTH username, if any
    at: float  # time.monotonic() when the final dot arrived


@dataclass
class Script:
    """How the server misbehaves. Read at each command, so a test may change it mid-run."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)  # lowercase address -> reply
    greylist: bool = False  # first RCPT of each address: 451 4.7.1; later ones accepted
    data_reply: str | None = None  # reply to the final dot instead of 250
    # The n-th message (from 1, counted over all sessions) answered so at the dot instead:
    # {6: "421 4.7.28 slow down"} accepts five, throttles the sixth, accepts the rest.
    nth_data_replies: dict[int, str] = field(default_factory=dict)
    drop_during_data: bool = False  # hang up after the message, before replying to the dot
    mail_reply: str | None = None  # reply to MAIL FROM
    greeting_reply: str | None = None  # e.g. "554 5.7.1 go away" (then the server hangs up)
    nth_greeting_replies: dict[int, str] = field(default_factory=dict)  # by session, from 1
    delay: float = 0.0  # seconds to wait before replying to the final dot
    smtputf8: bool = True  # advertise SMTPUTF8


GREYLIST_REPLY = "451 4.7.1 Greylisted, try again"
AUTH_REQUIRED_REPLY = "530 5.7.0 Authentication required"


class _Session(Session):
    """aiosmtpd's session without the deprecation warning it logs on every successful AUTH."""

    login_data: Any = None


class _ScriptedSMTP(SMTP):
    """aiosmtpd's protocol plus session counting, the scripted greeting and a forced abort.

    (Attribute names here must not start with ``smtp_`` or ``auth_``: aiosmtpd turns those
    into commands and AUTH mechanisms.)
    """

    def __init__(self, peer: SmtpServer, handler: _Hooks, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps this dict on the class, shared by every server in every thread.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.peer = peer
        self.implicit_tls = False
        self._greeted = False
        self._counted_closed = False
        self.number = 0  # this session's number on the server, from 1

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None  # STARTTLS calls this a second time
        super().connection_made(transport)
        if first:
            self.implicit_tls = transport.get_extra_info("ssl_object") is not None
            self.peer._session_opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._counted_closed:
            self._counted_closed = True
            self.peer._session_closed(self)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        """Send a reply line; the first one (the greeting) may be replaced by the script."""
        if self._greeted:
            return await super().push(status)
        self._greeted = True
        script = self.peer.script
        reply = script.nth_greeting_replies.get(self.number) or script.greeting_reply
        await super().push(status if reply is None else reply)
        if reply is not None and not reply.startswith("2") and self.transport is not None:
            self.transport.close()  # after flushing the reply; connection_lost ends the session

    @property
    def uses_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    def abort(self) -> None:
        """Close the connection now, without a reply (and without TLS close_notify)."""
        for transport in (self._original_transport, self.transport):
            if isinstance(transport, asyncio.Transport):
                transport.abort()


class _Hooks:
    """aiosmtpd handler: one method per scripted command, all reading ``peer.script``."""

    def __init__(self, peer: SmtpServer) -> None:
        self.peer = peer

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.peer.auth is None:
            responses = [line for line in responses if not line[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        peer = self.peer
        peer.commands.append(("MAIL", bool(getattr(server, "uses_tls", False))))
        if peer.auth is not None and peer.auth_required and not session.authenticated:
            return AUTH_REQUIRED_REPLY
        reply = peer.script.mail_reply or "250 2.1.0 OK"
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.peer._rcpt_reply(address)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _ScriptedSMTP)
        self.peer.commands.append(("DATA", server.uses_tls))
        script = self.peer.script
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            peer_ip=str(session.peer[0]) if session.peer else "",
            tls=server.uses_tls,
            authenticated=session.auth_data if session.authenticated else None,
            at=time.monotonic(),
        )
        if script.drop_during_data:
            self.peer.dropped.append(received)
            server.abort()
            await asyncio.Future()  # cancelled by connection_lost: no reply is ever sent
        self.peer.data_total += 1
        nth = script.nth_data_replies.get(self.peer.data_total)
        reply = nth or script.data_reply or "250 2.0.0 OK: queued"
        if reply.startswith("2"):
            self.peer._accept(received)  # queued at the dot, as a real MTA does, even if slow
        else:
            self.peer.refused.append(received)
        if script.delay > 0:
            await asyncio.sleep(script.delay)
        return reply


def _authenticator(users: dict[str, str]) -> Any:
    """An aiosmtpd authenticator checking PLAIN / LOGIN credentials against ``users``."""

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if username in users and users[username] == password:
            return AuthResult(success=True, auth_data=username)
        return AuthResult(success=False, handled=False)

    return check


class SmtpServer(Peer):
    """A scripted SMTP server on ``host:port`` with its own event loop in a background thread.

    Use as a context manager or call ``start()`` / ``stop()``; ``port=0`` picks a free port and
    ``port`` holds the real one once started. ``auth`` (username -> password) offers AUTH PLAIN
    and LOGIN, only over TLS, and then MAIL needs a successful AUTH unless ``auth_required`` is
    False. ``require_tls`` answers 530 to mail commands before STARTTLS.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        script: Script | None = None,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        require_tls: bool = False,
        auth: dict[str, str] | None = None,
        maildir: pathlib.Path | None = None,
        auth_required: bool = True,
        hostname: str = "localhost",
        size_limit: int = _DEFAULT_SIZE_LIMIT,
    ) -> None:
        if starttls_context is not None and implicit_tls_context is not None:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if require_tls and starttls_context is None and implicit_tls_context is None:
            raise ValueError("require_tls needs a starttls_context or an implicit_tls_context")
        if auth is not None and starttls_context is None and implicit_tls_context is None:
            raise ValueError("AUTH is offered only over TLS: give a TLS context too")
        self.host = host
        self.port = port
        self.script = script if script is not None else Script()
        self.starttls_context = starttls_context
        self.implicit_tls_context = implicit_tls_context
        self.require_tls = require_tls
        self.auth = auth
        self.auth_required = auth_required
        self.maildir = maildir
        self.hostname = hostname
        self.size_limit = size_limit
        self.messages: list[Received] = []
        self.dropped: list[Received] = []  # received, then the connection was dropped (script)
        self.commands: list[tuple[str, bool]] = []  # ("MAIL" | "DATA", over TLS) as they came
        self.refused: list[Received] = []  # answered with a non-2xx at the dot (script)
        self.data_total = 0  # messages that reached the final dot
        self.sessions_total = 0
        self.sessions_now = 0
        self.max_concurrent_sessions = 0
        self._greylist_seen: set[str] = set()
        self._live: set[_ScriptedSMTP] = set()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SmtpServer:
        if self._thread is not None:
            raise RuntimeError("SMTP server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family, backlog=_BACKLOG)
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run,
            args=(sock, ready, failure),
            name=f"smtp-{self.host}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout=10):
            failure.append(RuntimeError(f"SMTP server on {self.host}:{self.port} did not start"))
        if failure:
            self._thread.join(timeout=5)
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every open session; returns once the loop thread has ended."""
        if self._thread is None or self._loop is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            done.result(timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(
        self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                loop.create_server(
                    self._new_protocol, sock=sock, ssl=self.implicit_tls_context, backlog=_BACKLOG
                )
            )
        except BaseException as err:  # reported to start() in the caller's thread
            failure.append(err)
            sock.close()
            loop.close()
            return
        finally:
            ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None and self._loop is not None
        self._loop.set_exception_handler(_quiet_cancellation)
        self._server.close()
        for session in list(self._live):
            session.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports report connection_lost

    def _new_protocol(self) -> _ScriptedSMTP:
        assert self._loop is not None
        return _ScriptedSMTP(
            self,
            _Hooks(self),
            loop=self._loop,
            hostname=self.hostname,
            data_size_limit=self.size_limit,
            enable_SMTPUTF8=self.script.smtputf8,
            decode_data=False,
            tls_context=self.starttls_context,
            require_starttls=self.require_tls and self.starttls_context is not None,
            auth_require_tls=self.implicit_tls_context is None,
            auth_exclude_mechanism=None if self.auth is not None else ["PLAIN", "LOGIN"],
            authenticator=_authenticator(self.auth or {}),
        )

    # -- what the protocol reports (called on the loop thread) -----------------------------

    def _session_opened(self, session: _ScriptedSMTP) -> None:
        with self._changed:
            self._live.add(session)
            self.sessions_total += 1
            session.number = self.sessions_total
            self.sessions_now += 1
            self.max_concurrent_sessions = max(self.max_concurrent_sessions, self.sessions_now)

    def _session_closed(self, session: _ScriptedSMTP) -> None:
        with self._changed:
            if session in self._live:
                self._live.discard(session)
                self.sessions_now -= 1
            self._changed.notify_all()

    def _rcpt_reply(self, address: str) -> str:
        key = address.lower()
        script = self.script
        if key in script.rcpt_replies:
            return script.rcpt_replies[key]
        if script.greylist and key not in self._greylist_seen:
            self._greylist_seen.add(key)
            return GREYLIST_REPLY
        return "250 2.1.5 OK"

    def _accept(self, received: Received) -> None:
        with self._changed:
            self.messages.append(received)
            if self.maildir is not None:
                _write_eml(self.maildir, f"{self.host}-{len(self.messages):05d}", received.data)
            self._changed.notify_all()

    # -- for assertions --------------------------------------------------------------------

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` messages were accepted; False if the time ran out."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.messages) >= count, timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no session is open (clients hang up asynchronously); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.sessions_now == 0, timeout)


def _quiet_cancellation(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """While stopping, a TLS handshake we cancel is not worth a traceback; the rest is."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def _write_eml(maildir: pathlib.Path, name: str, data: bytes) -> None:
    """Write ``<host>-NNNNN.eml`` atomically, so a reader never sees half a message (several
    servers may share one folder: the name carries the server's address)."""
    maildir.mkdir(parents=True, exist_ok=True)
    final = maildir / f"{name}.eml"
    partial = maildir / f".{name}.eml.tmp"
    partial.write_bytes(data)
    os.replace(partial, final)


def free_port(hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    """A TCP port that is free on every one of ``hosts`` (for one server per address)."""
    if not hosts:
        raise ValueError("free_port needs at least one host")
    for _ in range(100):
        probes: list[socket.socket] = []
        try:
            port = 0
            for host in hosts:
                probes.append(_probe(host, port))
                port = probes[0].getsockname()[1]
            return port
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise OSError(f"no TCP port free on all of {list(hosts)}")


def _probe(host: str, port: int) -> socket.socket:
    """A TCP socket bound like the server's listener would be (SO_REUSEADDR), not listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError:
        probe.close()
        raise
    return probe
