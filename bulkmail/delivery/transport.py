"""The SMTP transport: open a session to a site's MX hosts (or to the smart host) and send one
message to one recipient at a time over it. Every result is a value (``Outcome``).

The engine's lanes each hold one ``Session``, send message after message over it, and ask the
``Connector`` for a new one when it is used up or dead.

- ``Connector.open`` tries each MX host in order and each of its addresses in turn; a refused
  connection, a timeout, a 4xx/5xx greeting or EHLO, or TLS failing under "required" moves on.
  When none works it returns the *last* failure (451 4.4.1 connection failed, the server's
  greeting, 451 4.7.5 TLS unavailable). It never raises, except ``RelayError`` when the
  smart host cannot work as configured: its certificate does not verify, the password
  variable is unset, or it refuses our credentials (``AuthenticationError``). Retrying would
  only defer everyone until expiry, so the send stops with one line saying what to fix.
  Which handshakes to try is ``tlspolicy``'s business.
- ``Session.send`` never raises: a refusal of MAIL, RCPT, DATA or the dot is the Outcome (with
  an RSET when a transaction was left open, so the session goes on); a lost connection or a
  timeout is 451 4.4.2 and the session is dead; ``delivered_possible`` when the dot went out
  and no answer came.
- One context manager (``_Guard``) maps every aiosmtplib, ssl and socket error to a reply.

Timeouts (``Timeouts``, RFC 5321 4.5.3.2): ``connect`` the TCP connect; ``greeting`` the banner,
EHLO, STARTTLS and AUTH; ``mail``; ``rcpt``; ``data_init`` DATA until 354; ``data_block`` a wait
for the socket to take the message (only while its write buffer is full); ``data_end`` the
answer to the dot. Past ``session`` ``alive()`` is False; a running transaction is never cut.

Hot path: MAIL, RCPT, DATA with aiosmtplib's ``execute_command`` and the body through its
protocol, not ``sendmail``: no exception per refusal, separate DATA / dot timeouts, knowing
whether the dot went out, and less than half the CPU: ~180 us vs ~430 us a message (15 KB,
20 sessions into Postfix smtp-sink, ~3,500 vs ~1,800 msg/s). PIPELINING is recorded, not used:
aiosmtplib reads one reply per write. Messages should come CRLF-only (compose guarantees it);
checking that costs ~40 us, and anything else is normalised rather than sent as is.
The body goes through private protocol internals (``write``, ``_drain_helper``,
``read_response``, ``_response_pending``): hence the version pin in pyproject.toml, and
tests/integration/test_transport_drain.py, which fails if a new version drops a reply again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, cast

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from bulkmail.config import Timeouts
from bulkmail.delivery.classify import (
    Reply,
    connection_failed,
    message_too_big,
    parse_reply,
    smtputf8_unsupported,
    tls_unavailable,
)
from bulkmail.delivery.dane import match_chain
from bulkmail.delivery.tlspolicy import (
    NOVERIFY,
    PLAIN,
    PLAINTEXT,
    POLICIES,
    VERIFY,
    Requirement,
    TlsContexts,
    TlsPolicy,
    TlsState,
    hello,
    peer_chain,
    tls_state,
    upgrade,
)
from bulkmail.errors import AuthenticationError, ConfigError, RelayError

if TYPE_CHECKING:
    from bulkmail.delivery.routing import MxHost

__all__ = [
    "Connector",
    "Outcome",
    "RelaySettings",
    "Session",
    "TlsState",
    "Timeouts",
    "TransportSettings",
]

log = logging.getLogger(__name__)

_QUIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RelaySettings:
    """The smart host. ``security`` "starttls" (port 587) or "tls" (implicit, port 465)."""

    host: str
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    password_env: str = "BULKMAIL_RELAY_PASSWORD"  # where the password comes from (in errors)

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls"):
            raise ConfigError(f"relay.security: {self.security!r} is not starttls or tls")


@dataclass(frozen=True)
class TransportSettings:
    """How to reach servers: our EHLO name, the port, the TLS policy, the timeouts, a relay."""

    helo: str
    port: int = 25
    tls: str = "opportunistic"
    timeouts: Timeouts = Timeouts()
    relay: RelaySettings | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.tls not in POLICIES:
            raise ConfigError(f"tls: {self.tls!r} is not one of {', '.join(POLICIES)}")
        if not self.helo or not self.helo.isascii() or _UNSAFE.search(self.helo):
            raise ConfigError(f"helo: {self.helo!r} is not a host name")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended. ``stage``: connect|greeting|ehlo|tls|auth|mail|rcpt|data|dot."""

    reply: Reply
    mx_host: str | None
    tls: TlsState | None
    stage: str
    delivered_possible: bool = False  # the dot was sent and no answer came


def connection_lost(detail: str) -> Reply:
    """The connection broke or timed out during a session: deferred (4.4.2)."""
    return Reply(451, f"Connection lost: {detail}", "4.4.2")


# -- the error boundary --------------------------------------------------------------------


class _Failed(Exception):
    """Internal: a step failed; ``reply`` is what to report, ``stage`` where it happened."""

    def __init__(
        self, reply: Reply, stage: str, *, certificate: bool = False, detail: str = ""
    ) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.stage = stage
        self.certificate = certificate  # the TLS handshake failed on certificate verification
        self.detail = detail  # for a TLS failure: ssl's own words


class _Guard:
    """The one place aiosmtplib, ssl and socket errors are translated (into ``_Failed``).

    ``stage`` is set by the code inside before each step; ``label`` names the peer in texts;
    ``lost`` makes the reply for a broken connection (4.4.1 while opening, 4.4.2 in a session).
    One instance per session, reused for every message: no allocation on the hot path.
    """

    __slots__ = ("label", "lost", "stage")

    def __init__(self, label: str, lost: Callable[[str], Reply]) -> None:
        self.label = label
        self.lost = lost
        self.stage = "connect"

    def __enter__(self) -> _Guard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, SMTPException | OSError):
            raise self.translate(exc) from exc

    def translate(self, exc: SMTPException | OSError) -> _Failed:
        tls_error = next((e for e in (exc, exc.__cause__) if isinstance(e, ssl.SSLError)), None)
        if tls_error is not None:
            certificate = isinstance(tls_error, ssl.SSLCertVerificationError)
            detail = getattr(tls_error, "verify_message" if certificate else "reason", None)
            return _Failed(
                tls_unavailable(f"{self.label}: {detail or tls_error}"),
                "tls",
                certificate=certificate,
                detail=str(detail or tls_error),
            )
        if isinstance(exc, SMTPResponseException) and exc.code >= 200:
            return _Failed(parse_reply(exc.code, exc.message), self.stage)
        if isinstance(exc, TimeoutError):
            return _Failed(self.lost(f"{self.label}: timed out ({self.stage})"), self.stage)
        return _Failed(self.lost(f"{self.label}: {exc or type(exc).__name__}"), self.stage)


# -- addresses -----------------------------------------------------------------------------

_UNSAFE = re.compile(r'[\x00-\x20\x7f<>"]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUOTED_LOCAL = re.compile(r'^"(?:[^"\\]|\\.)*"(?=@)')


def _address_ok(address: str) -> bool:
    """True when ``address`` can go between < > on a command line (no injection possible)."""
    if _UNSAFE.search(address) is None:
        return True
    if _CONTROL.search(address):
        return False
    return _UNSAFE.search(_QUOTED_LOCAL.sub("", address, count=1)) is None


def _wire_body(data: bytes) -> bytes:
    """The bytes after DATA: CRLF line ends, leading dots doubled, then the final dot line."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = normalize_message_line_endings(data)
    if b"\n." in data:  # dot-stuffing (RFC 5321 4.5.2); bytes.replace beats a regex here
        data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n" if data.endswith(b"\r\n") else data + b"\r\n.\r\n"


# -- the session ---------------------------------------------------------------------------


class Session:
    """One open SMTP connection, ready for MAIL. One message and one recipient per ``send``."""

    __slots__ = (
        "mx_host",
        "address",
        "tls",
        "messages_sent",
        "smtputf8",
        "size_limit",
        "pipelining",
        "_smtp",
        "_timeouts",
        "_deadline",
        "_dead",
        "_dot_sent",
        "_size_option",
        "_guard",
    )

    def __init__(
        self, smtp: SMTP, mx_host: str, address: str, tls: TlsState, timeouts: Timeouts
    ) -> None:
        self.mx_host = mx_host
        self.address = address
        self.tls = tls
        self.messages_sent = 0
        self.smtputf8 = smtp.supports_extension("smtputf8")
        self.size_limit = _size_limit(smtp.esmtp_extensions.get("size"))
        self.pipelining = smtp.supports_extension("pipelining")
        self._smtp = smtp
        self._timeouts = timeouts
        self._deadline = time.monotonic() + timeouts.session
        self._dead = False
        self._dot_sent = False
        self._size_option = smtp.supports_extension("size")
        self._guard = _Guard(f"{mx_host}[{address}]", connection_lost)

    def __repr__(self) -> str:
        return f"<Session {self.mx_host}[{self.address}] sent={self.messages_sent}>"

    def alive(self) -> bool:
        """False once the peer closed the connection, it broke, or the session cap passed."""
        return not self._dead and self._smtp.is_connected and time.monotonic() < self._deadline

    async def send(
        self, envelope_from: str, recipient: str, data: bytes, *, smtputf8: bool = False
    ) -> Outcome:
        """Send ``data`` from ``envelope_from`` to ``recipient``; never raises for a reply."""
        utf8 = smtputf8 or not (envelope_from.isascii() and recipient.isascii())
        refused = self._precheck(envelope_from, recipient, len(data), utf8)
        if refused is not None:
            return refused
        self._dot_sent = False
        try:
            with self._guard:
                return await self._transaction(envelope_from, recipient, data, utf8)
        except _Failed as failure:
            self._drop()
            return Outcome(
                failure.reply,
                self.mx_host,
                self.tls,
                failure.stage,
                failure.stage == "dot" and self._dot_sent,
            )
        except asyncio.CancelledError:
            self._drop()  # mid-transaction: no QUIT could be understood, just hang up
            raise

    async def close(self) -> None:
        """QUIT politely (briefly), then close. Never raises."""
        self._dead = True
        try:
            if self._smtp.is_connected:
                with self._guard:
                    await self._smtp.quit(timeout=min(_QUIT_TIMEOUT, self._timeouts.mail))
        except _Failed:
            pass
        finally:
            self._smtp.close()

    def _precheck(self, sender: str, recipient: str, size: int, utf8: bool) -> Outcome | None:
        """The Outcome for a message that must not be sent here at all, else None."""
        if not self.alive():
            reason = "session closed" if self._smtp.is_connected else "connection closed"
            return self._refusal(connection_lost(f"{self._guard.label}: {reason}"), "mail")
        if not _address_ok(sender):
            return self._refusal(Reply(553, "Sender address not usable in SMTP", "5.1.7"), "mail")
        if not _address_ok(recipient):
            return self._refusal(
                Reply(553, "Recipient address not usable in SMTP", "5.1.3"), "rcpt"
            )
        if utf8 and not self.smtputf8:
            return self._refusal(smtputf8_unsupported(self._guard.label), "rcpt")
        if self.size_limit is not None and size > self.size_limit:
            return self._refusal(message_too_big(size, self.size_limit), "mail")
        return None

    async def _transaction(self, sender: str, recipient: str, data: bytes, utf8: bool) -> Outcome:
        smtp, timeouts, guard = self._smtp, self._timeouts, self._guard
        encoding = "utf-8" if utf8 else "ascii"
        guard.stage = "mail"
        options = [b"FROM:<" + sender.encode(encoding) + b">"]
        if self._size_option:
            options.append(b"SIZE=%d" % len(data))
        if utf8:
            options.append(b"SMTPUTF8")
        reply = await smtp.execute_command(b"MAIL", *options, timeout=timeouts.mail)
        if reply.code // 100 != 2:
            return await self._refused(reply, "mail", reset=False)
        guard.stage = "rcpt"
        address = b"TO:<" + recipient.encode(encoding) + b">"
        reply = await smtp.execute_command(b"RCPT", address, timeout=timeouts.rcpt)
        if reply.code // 100 != 2:
            return await self._refused(reply, "rcpt", reset=True)
        guard.stage = "data"
        reply = await smtp.execute_command(b"DATA", timeout=timeouts.data_init)
        if reply.code != 354:
            return await self._refused(reply, "data", reset=True)
        guard.stage = "dot"
        reply = await self._body(data)
        if reply.code // 100 != 2:
            return await self._refused(reply, "dot", reset=False)
        self.messages_sent += 1
        return Outcome(parse_reply(reply.code, reply.message), self.mx_host, self.tls, "dot")

    async def _body(self, data: bytes) -> SMTPResponse:
        """Write the message and its final dot; wait for the server's answer to the dot."""
        protocol = self._smtp.protocol
        if protocol is None:
            raise SMTPServerDisconnected("Connection lost")
        # Mark the answer to the dot as expected *before* writing, as aiosmtplib's own
        # execute_data_command does: from 5.1 on, the protocol drops data that arrives while
        # no reply is pending, so a 250 that comes in while we wait for the drain below would
        # be lost, the read would time out, and a delivered message would be retried.
        protocol._response_pending = True
        protocol.write(_wire_body(data))  # raises, before sending anything, if already closed
        self._dot_sent = True
        transport = cast(asyncio.WriteTransport, protocol.transport)
        if transport is not None and transport.get_write_buffer_size():
            # The server is slow to take the data: wait for the buffer to drain, one block
            # timeout at most. _drain_helper is the flow-control hook StreamWriter.drain uses.
            async with asyncio.timeout(self._timeouts.data_block):
                await protocol._drain_helper()
        return await protocol.read_response(timeout=self._timeouts.data_end)

    async def _refused(self, response: SMTPResponse, stage: str, *, reset: bool) -> Outcome:
        """The Outcome for a refusal; RSET when a transaction was left open, drop after 421."""
        outcome = self._refusal(parse_reply(response.code, response.message), stage)
        if response.code == 421 or not self._smtp.is_connected:
            self._drop()
        elif reset:
            await self._reset()
        return outcome

    async def _reset(self) -> None:
        try:
            with self._guard:
                reply = await self._smtp.execute_command(b"RSET", timeout=self._timeouts.mail)
            if reply.code // 100 == 2:
                return
        except _Failed:
            pass
        self._drop()

    def _refusal(self, reply: Reply, stage: str) -> Outcome:
        return Outcome(reply, self.mx_host, self.tls, stage)

    def _drop(self) -> None:
        self._dead = True
        self._smtp.close()


def _size_limit(parameter: str | None) -> int | None:
    """The SIZE limit from the EHLO parameter (RFC 1870); 0 or none means no stated limit."""
    if parameter is None:
        return None
    try:
        limit = int(parameter.split()[0]) if parameter.strip() else 0
    except ValueError:
        return None
    return limit or None


# -- the connector -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one connection attempt goes and what it must do there."""

    name: str  # the MX or relay host name: TLS server name, label in texts
    address: str
    port: int
    contexts: TlsContexts | None  # None: no TLS at all
    tls_required: bool = False  # never deliver in plaintext
    implicit_tls: bool = False  # TLS from the first byte
    relay: RelaySettings | None = None  # AUTH with its credentials

    @property
    def label(self) -> str:
        return f"{self.name}[{self.address}]:{self.port}"


class Connector:
    """Opens sessions under one ``TransportSettings``. Shared by every lane of a worker."""

    def __init__(self, settings: TransportSettings) -> None:
        self._settings = settings
        self._tls = TlsPolicy(settings.tls, settings.ca_file)
        relay = settings.relay
        self._relay_contexts = TlsContexts(relay.ca_file or settings.ca_file) if relay else None
        self._policy_contexts: TlsContexts | None = self._tls.contexts  # built when first needed

    async def open(self, hosts: Sequence[MxHost]) -> Session | Outcome:
        """A session to the first MX host address that works, else the last failure."""
        if self._settings.relay is not None:
            return await self._open_relay(self._settings.relay)
        outcome = Outcome(connection_failed("no MX host address to try"), None, None, "connect")
        for host in hosts:
            target_port = host.port or self._settings.port
            for address in host.addresses:
                name = host.name.rstrip(".")
                if host.requirement is None:
                    result = await self._open_mx(name, address, target_port)
                else:
                    result = await self._open_required(name, address, target_port, host.requirement)
                if isinstance(result, Session):
                    return result
                outcome = result
        return outcome

    async def _open_required(
        self, name: str, address: str, port: int, requirement: Requirement
    ) -> Session | Outcome:
        """An address under a published policy: a verified handshake (chain and MX name) first.

        Enforced: nothing else is tried, a TLS failure is the outcome (deferred, 4.7.5, the
        policy named) and no byte of a message goes out. Testing: the failure is recorded in
        the session's ``TlsState.failure`` and the usual handshakes of [sender] tls follow.
        """
        if self._policy_contexts is None:
            self._policy_contexts = TlsContexts(self._settings.ca_file)
        if requirement.source == "dane":
            return await self._open_dane(name, address, port, requirement)
        target = _Target(name, address, port, self._policy_contexts, tls_required=True)
        outside = None if requirement.matched else f"{name} is not an mx of the policy"
        try:
            session = await self._start(target, VERIFY)
        except _Failed as failure:
            if failure.stage != "tls":
                return Outcome(failure.reply, name, None, failure.stage)
            detail = failure.reply.text.removeprefix(tls_unavailable().text + ": ")
            why = f"{requirement.label}: no verified TLS: {detail}"
            if requirement.enforce:
                log.info("%s: %s", target.label, why)
                return Outcome(Reply(451, why, "4.7.5"), name, None, "tls")
            opened = await self._open_mx(name, address, port)
            if isinstance(opened, Session):
                opened.tls = replace(opened.tls, failure=why[:500])
            return opened
        if outside is not None:  # testing only: the router drops such hosts when enforcing
            session.tls = replace(session.tls, failure=f"{requirement.label}: {outside}")
        else:
            session.tls = replace(session.tls, auth=requirement.source)
        return session

    async def _open_dane(
        self, name: str, address: str, port: int, requirement: Requirement
    ) -> Session | Outcome:
        """DANE (RFC 7672): TLS is mandatory and the TLSA records are the authentication.
        The handshake does not check the chain against CAs (DANE-EE needs none, DANE-TA
        brings its own anchor); the chain the server sent is matched before any MAIL, and a
        mismatch hangs up: deferred (4.7.5), nothing sent."""
        if not requirement.tlsa:  # the TLSA lookup failed under a signed MX: cannot know
            return Outcome(Reply(451, requirement.label, "4.7.5"), name, None, "tls")
        assert self._policy_contexts is not None
        target = _Target(name, address, port, self._policy_contexts, tls_required=True)
        try:
            session = await self._start(target, NOVERIFY)
        except _Failed as failure:
            if failure.stage != "tls":
                return Outcome(failure.reply, name, None, failure.stage)
            detail = failure.reply.text.removeprefix(tls_unavailable().text + ": ")
            return Outcome(
                Reply(451, f"{requirement.label}: no TLS: {detail}", "4.7.5"), name, None, "tls"
            )
        chain = peer_chain(session._smtp.get_transport_info("ssl_object"))
        problem = match_chain(requirement.tlsa, chain, name)
        if problem is not None:
            await session.close()
            why = f"{requirement.label}: {problem} ({target.label})"
            log.info("%s", why)
            return Outcome(Reply(451, why, "4.7.5"), name, None, "tls")
        session.tls = replace(session.tls, verified=True, auth="dane")
        return session

    async def _open_mx(self, name: str, address: str, port: int) -> Session | Outcome:
        """One address, with the TLS fallbacks of the policy (each on a new connection)."""
        tls = self._tls
        target = _Target(name, address, port, tls.contexts, tls_required=tls.required)
        key = (name, address)
        mode = tls.first_mode(key)
        while True:
            try:
                return await self._start(target, mode)
            except _Failed as failure:
                after = None
                if failure.stage == "tls":
                    after = tls.after_failure(key, mode, certificate_failed=failure.certificate)
                    log.info(
                        "%s: STARTTLS (%s) failed: %s; next: %s",
                        target.label,
                        mode,
                        failure.reply,
                        after or "give up",
                    )
                if after is None:
                    return Outcome(failure.reply, name, None, failure.stage)
                mode = after

    async def _open_relay(self, relay: RelaySettings) -> Session | Outcome:
        """The smart host, each of its addresses: TLS always and verified, then AUTH.

        ``RelayError`` when no address works and one of them presented a certificate that
        does not verify, or before connecting when the password variable is unset.
        """
        if relay.username is not None and not relay.password:
            raise RelayError(
                f"relay {relay.host}:{relay.port}: {relay.password_env} is not set (the "
                f"password for user {relay.username!r}, named by relay.password_env)"
            )
        untrusted: _Failed | None = None
        try:
            with _Guard(f"{relay.host}:{relay.port}", connection_failed):
                addresses = await _resolve(relay.host, relay.port)
        except _Failed as failure:
            return Outcome(failure.reply, relay.host, None, "connect")
        outcome = Outcome(
            connection_failed(f"{relay.host}: no address"), relay.host, None, "connect"
        )
        for address in addresses:
            target = _Target(
                relay.host,
                address,
                relay.port,
                self._relay_contexts,
                tls_required=True,
                implicit_tls=relay.security == "tls",
                relay=relay,
            )
            try:
                return await self._start(target, VERIFY)
            except _Failed as failure:
                outcome = Outcome(failure.reply, relay.host, None, failure.stage)
                untrusted = failure if failure.certificate else untrusted
        if untrusted is not None:
            raise RelayError(
                f"relay {relay.host}:{relay.port}: certificate not trusted "
                f"({untrusted.detail}); set relay.ca_file to the CA certificate that "
                f"issued it (it must name {relay.host})"
            )
        return outcome

    async def _start(self, target: _Target, mode: str) -> Session:
        """Connect, greet, EHLO, STARTTLS per ``mode``, AUTH for a relay; raises ``_Failed``."""
        guard = _Guard(target.label, connection_failed)
        timeout = self._settings.timeouts.greeting
        implicit = (
            target.contexts.for_mode(mode) if target.implicit_tls and target.contexts else None
        )
        smtp = SMTP(
            hostname=target.name,
            local_hostname=self._settings.helo,
            timeout=timeout,
            use_tls=implicit is not None,
            tls_context=implicit,
            start_tls=False,
        )
        try:
            with guard:
                guard.stage = "connect"
                sock = await _open_socket(
                    target.address, target.port, self._settings.timeouts.connect
                )
                guard.stage = "greeting"
                await _connect(smtp, sock)
                guard.stage = "ehlo"
                await hello(smtp, timeout)
                guard.stage = "tls"
                if implicit is not None:
                    tls = tls_state(smtp.get_transport_info("ssl_object"), verified=True)
                else:
                    tls = await self._starttls(smtp, target, mode)
                if target.relay is not None:
                    guard.stage = "auth"
                    await _login(smtp, target.relay, timeout)
        except BaseException:
            smtp.close()
            raise
        return Session(smtp, target.name, target.address, tls, self._settings.timeouts)

    async def _starttls(self, smtp: SMTP, target: _Target, mode: str) -> TlsState:
        """STARTTLS per ``mode``; PLAINTEXT when not offered (``_Failed`` if TLS is required)."""
        if mode == PLAIN or target.contexts is None:
            return PLAINTEXT
        if not smtp.supports_extension("starttls"):
            if target.tls_required:
                raise _Failed(tls_unavailable(f"{target.label}: STARTTLS not offered"), "tls")
            return PLAINTEXT
        return await upgrade(
            smtp,
            target.name,
            target.contexts.for_mode(mode),
            self._settings.timeouts.greeting,
            verified=mode == VERIFY,
        )


async def _connect(smtp: SMTP, sock: socket.socket) -> None:
    """The greeting (after an implicit TLS handshake) on a connected socket."""
    try:
        await smtp.connect(sock=sock)
    except BaseException:
        sock.close()
        raise


async def _login(smtp: SMTP, relay: RelaySettings, timeout: float) -> None:
    """AUTH on the relay. Refused credentials raise AuthenticationError, without the password."""
    if relay.username is None:
        return
    where = f"relay {relay.host}:{relay.port}"
    if not smtp.supported_auth_methods:
        raise AuthenticationError(
            f"{where} offers no AUTH mechanism we support; cannot log in as user {relay.username!r}"
        )
    try:
        await smtp.login(relay.username, relay.password or "", timeout=timeout)
    except SMTPAuthenticationError as exc:
        if exc.code // 100 == 4:  # "454 4.7.0 Temporary authentication failure": deferred
            raise
        message = (
            f"{where} rejected the credentials for user {relay.username!r}: "
            f"{exc.code} {exc.message}"
        )
        if relay.password:
            message = message.replace(relay.password, "********")
        raise AuthenticationError(message) from None


async def _open_socket(address: str, port: int, timeout: float) -> socket.socket:
    """A connected non-blocking TCP socket to an IP address, within ``timeout``."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (an IP literal resolves to itself), in resolver order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
