"""TLS for SMTP delivery: the contexts, what to try next when a handshake fails, STARTTLS.

The transport opens connections and maps errors; this module decides the handshakes and does
the STARTTLS step. Policies (``TransportSettings.tls``):

- ``"opportunistic"`` (RFC 3207, RFC 7435; Postfix's "may" level): STARTTLS whenever the MX
  host offers it; an unverifiable certificate is still better than plaintext. Python 3.11
  cannot tell whether a chain *would* have verified after a handshake made without
  verification (the peer's chain is only exposed from 3.13 on), so the first handshake
  verifies: the chain against the system CAs plus ``ca_file``, the certificate name against
  the MX host name. If that fails *on the certificate*, the connection is dropped and a new
  one is made with a context that does not verify, and the session records
  ``verified=False``. If the handshake fails for any other reason, a new connection is made
  in plaintext (``used=False``), as Postfix does: a broken handshake never continues in
  plaintext on the same connection.
- ``"required"`` (Postfix's "encrypt"): the same handshakes, never plaintext. STARTTLS not
  offered, or no handshake succeeding, ends the attempt at that address with 451 4.7.5
  (``classify.tls_unavailable``: deferred) and the next MX host is tried.
- ``"off"``: never STARTTLS.
- Relay (smart host): TLS always, always verified, no fallback (handled by the transport).

What a (host, address) taught us is remembered for ``TlsPolicy.ttl`` (an hour), so a site with
a self-signed certificate costs one extra connection per hour rather than one per session.
The price: a site that fixes its certificate is reported ``verified=False`` until then.

A recipient domain's published policy (MTA-STS, ``Requirement`` on each ``MxHost``) comes on
top: in mode enforce only a verified handshake (chain and MX name) is tried, whatever
``[sender] tls`` says, and its failure ends the attempt at that address; in mode testing the
verified handshake is tried first and a failure is only recorded (``TlsState.failure``).
``TlsState.auth`` says what authenticated the peer: none, pkix (verified against the CAs
without a policy asking), mta-sts.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtplib import SMTP, SMTPHeloError

from bulkmail.errors import ConfigError

VERIFY = "verify"  # STARTTLS, certificate verified (chain and name)
NOVERIFY = "noverify"  # STARTTLS, certificate not checked
PLAIN = "plain"  # no STARTTLS

POLICIES = ("opportunistic", "required", "off")


@dataclass(frozen=True, slots=True)
class TlsState:
    """How a session is protected: TLS or not, certificate verified or not, what was agreed."""

    used: bool
    verified: bool
    version: str | None = None
    cipher: str | None = None
    auth: str = "none"  # none | pkix | mta-sts | dane: what authenticated the peer
    failure: str | None = None  # a policy in mode testing that was not met, and why


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a recipient domain's published policy asks of TLS to one of its MX hosts."""

    source: str  # "mta-sts" | "dane"
    enforce: bool  # True: authenticated TLS or no delivery; False (mode testing): record only
    matched: bool = True  # the MX host name matches the policy's mx patterns
    label: str = ""  # names the policy in texts: "MTA-STS policy of example.com (id 2026)"
    tlsa: tuple[Any, ...] = ()  # DANE: the usable, DNSSEC-validated TLSA records (``dane.Tlsa``)


PLAINTEXT = TlsState(used=False, verified=False)


def peer_chain(ssl_object: ssl.SSLObject | None) -> list[bytes]:
    """The certificates the server sent (DER, its own first), verified or not. Python 3.11
    has no public API for it (3.13's ``get_unverified_chain``); the private method of the
    same name exists since 3.10. [] if it cannot be had."""
    inner = getattr(ssl_object, "_sslobj", None)
    getter = getattr(inner, "get_unverified_chain", None)
    if getter is None:
        return []
    return [cert.public_bytes(2) for cert in getter() or []]  # 2: _ssl.ENCODING_DER


def tls_state(ssl_object: ssl.SSLObject | None, *, verified: bool) -> TlsState:
    """The TlsState of an established TLS connection (PLAINTEXT when there is none)."""
    if ssl_object is None:
        return PLAINTEXT
    cipher = ssl_object.cipher()
    auth = "pkix" if verified else "none"
    return TlsState(True, verified, ssl_object.version(), cipher[0] if cipher else None, auth)


def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context that checks the chain (system CAs + ``ca_file``) and the host name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ca_file {ca_file}: cannot load CA certificates: {exc}") from None
    return context


def unverified_context() -> ssl.SSLContext:
    """A client context that encrypts without checking who is at the other end."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class TlsContexts:
    """The two client contexts of one CA configuration, built once (loading CAs is slow)."""

    def __init__(self, ca_file: str | None) -> None:
        self.verifying = verifying_context(ca_file)
        self.unverified = unverified_context()

    def for_mode(self, mode: str) -> ssl.SSLContext:
        return self.verifying if mode == VERIFY else self.unverified


def next_mode(policy: str, mode: str, *, certificate_failed: bool) -> str | None:
    """What to try on a new connection after STARTTLS in ``mode`` failed; None: give up.

    Every step is weaker than the last (verify -> noverify -> plain), so retrying ends.
    """
    if mode == VERIFY and certificate_failed:
        return NOVERIFY
    if policy == "opportunistic" and mode in (VERIFY, NOVERIFY):
        return PLAIN
    return None


class TlsPolicy:
    """One Connector's TLS policy: its contexts, and what each (host, address) taught us.

    ``first_mode`` is the handshake to try first; ``after_failure`` the next one (and it is
    remembered for ``ttl`` seconds), or None when the policy allows nothing more.
    """

    def __init__(
        self,
        policy: str,
        ca_file: str | None,
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"tls: {policy!r} is not one of {', '.join(POLICIES)}")
        self.policy = policy
        self.required = policy == "required"
        self.contexts = TlsContexts(ca_file) if policy != "off" else None
        self.ttl = ttl
        self._clock = clock
        self._learnt: dict[tuple[str, str], tuple[str, float]] = {}

    def first_mode(self, key: tuple[str, str]) -> str:
        if self.contexts is None:
            return PLAIN
        learnt = self._learnt.get(key)
        if learnt is not None:
            if learnt[1] > self._clock():
                return learnt[0]
            del self._learnt[key]
        return VERIFY

    def after_failure(
        self, key: tuple[str, str], mode: str, *, certificate_failed: bool
    ) -> str | None:
        after = next_mode(self.policy, mode, certificate_failed=certificate_failed)
        if after is not None:
            now = self._clock()
            if len(self._learnt) >= 10_000:  # bounded: drop what has expired
                self._learnt = {k: v for k, v in self._learnt.items() if v[1] > now}
            self._learnt[key] = (after, now + self.ttl)
        return after


async def hello(smtp: SMTP, timeout: float) -> None:
    """EHLO, or HELO if the server refuses EHLO (and is still there)."""
    try:
        await smtp.ehlo(timeout=timeout)
    except SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo(timeout=timeout)


async def upgrade(
    smtp: SMTP, server_name: str, context: ssl.SSLContext, timeout: float, *, verified: bool
) -> TlsState:
    """STARTTLS with ``context``, then EHLO again (RFC 3207: forget what was said before).

    aiosmtplib, ssl and socket errors propagate: the caller's boundary maps them.
    """
    await smtp.starttls(server_hostname=server_name, tls_context=context, timeout=timeout)
    await hello(smtp, timeout)
    return tls_state(smtp.get_transport_info("ssl_object"), verified=verified)
