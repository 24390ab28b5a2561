"""The TLS checks: the smart host (relay mode) and, on request, one MX host (``--probe``).

Relay mode goes through the transport's own ``Connector`` with the configured relay settings,
so the check exercises exactly what a send will do: connect, TLS (STARTTLS or implicit) with
the certificate verified against the system CAs plus ``ca_file``, then AUTH with the password
from the environment. The MX probe opens a plain session to one host and reports whether
STARTTLS is offered and whether the certificate verifies; delivery to MX hosts is
opportunistic, so an unverifiable certificate is a warning there, not a failure.

Timeouts are the configured ones, capped at ``TIMEOUT_CAP`` seconds: a check should not wait
the five minutes RFC 5321 grants a greeting.
"""

from __future__ import annotations

import dataclasses
import ssl

from aiosmtplib import SMTP, SMTPException

from bulkmail.delivery.tlspolicy import verifying_context
from bulkmail.delivery.transport import Connector, Session, Timeouts, TransportSettings
from bulkmail.errors import AuthenticationError, RelayError
from bulkmail.readiness.results import CheckResult, failed, inconclusive, passed, warned

TIMEOUT_CAP = 30.0


def capped(timeouts: Timeouts, cap: float = TIMEOUT_CAP) -> Timeouts:
    """``timeouts`` with every value at most ``cap`` seconds."""
    values = {f.name: min(getattr(timeouts, f.name), cap) for f in dataclasses.fields(timeouts)}
    return Timeouts(**values)


async def check_relay_tls(settings: TransportSettings, password_env: str) -> CheckResult:
    """Connect to the smart host, TLS with a verified certificate, AUTH; one result."""
    relay = settings.relay
    if relay is None:
        raise ValueError("check_relay_tls needs relay settings")
    subject = f"relay {relay.host}:{relay.port}"
    connector = Connector(dataclasses.replace(settings, timeouts=capped(settings.timeouts)))
    credentials = f"check [relay] username and the password in ${password_env}" + (
        "" if relay.password else f" (${password_env} is not set)"
    )
    ca_remedy = (
        "set [relay] ca_file to the CA certificate that issued the smart "
        f"host's certificate (which must name {relay.host})"
    )
    try:
        opened = await connector.open([])
    except AuthenticationError as exc:
        return failed("tls", subject, f"TLS verified, but AUTH failed: {exc}", credentials)
    except RelayError as exc:  # the certificate does not verify, or no password is set
        if relay.username is not None and not relay.password:
            return failed(
                "tls", subject, f"{password_env} is not set", f"export {password_env}=..."
            )
        return failed("tls", subject, f"TLS failed: {exc}", ca_remedy)
    if not isinstance(opened, Session):
        text = f"{opened.reply.code} {opened.reply.text}"
        if opened.stage == "tls":
            return failed("tls", subject, f"TLS failed: {text}", ca_remedy)
        if opened.stage == "auth":
            return inconclusive("tls", subject, f"AUTH failed for now: {text}", credentials)
        return failed(
            "tls",
            subject,
            f"no session ({opened.stage}): {text}",
            "check [relay] host, port and security, and that the firewall lets "
            f"this machine reach {relay.host}:{relay.port}",
        )
    tls = opened.tls
    await opened.close()
    done = f"{tls.version or 'TLS'}, certificate verified"
    if relay.username is None:
        return warned(
            "tls",
            subject,
            f"{done}; AUTH not tried (no [relay] username)",
            '[relay] username = "<your smart-host user>"',
        )
    return passed("tls", subject, f"{done}, AUTH as {relay.username!r} accepted")


def parse_probe(target: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); ValueError if broken."""
    host, port = target.strip(), default_port
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest:
            port = int(rest.removeprefix(":"))
    elif host.count(":") == 1:
        host, _, text = host.partition(":")
        port = int(text)
    if not host or not 0 < port < 65536:
        raise ValueError(f"{target!r} is not HOST[:PORT]")
    return host, port


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLError):
            return candidate
    return None


async def probe_mx(
    host: str,
    port: int,
    *,
    helo: str,
    ca_file: str | None,
    timeout: float = TIMEOUT_CAP,
    address: str | None = None,
) -> CheckResult:
    """Open a session to ``host`` (at ``address``, resolved by the caller through ``[dns]``;
    else the system's resolver): is STARTTLS offered, does the certificate verify?"""
    subject = f"probe {host}:{port}"
    context = verifying_context(ca_file)
    smtp = SMTP(
        hostname=address or host,
        port=port,
        local_hostname=helo,
        timeout=timeout,
        start_tls=False,
        use_tls=False,
    )
    try:
        await smtp.connect()
        await smtp.ehlo()
        if not smtp.supports_extension("starttls"):
            return warned(
                "tls",
                subject,
                f"{host} does not offer STARTTLS: mail to it goes in plaintext",
                "nothing to do on your side; the receiver lacks TLS",
            )
        try:
            await smtp.starttls(server_hostname=host, tls_context=context)
        except (SMTPException, OSError) as exc:
            error = _tls_error(exc)
            if isinstance(error, ssl.SSLCertVerificationError):
                return warned(
                    "tls",
                    subject,
                    f"STARTTLS offered, certificate not verified: {error.verify_message}",
                    "if this is your own MX or smart "
                    "host, install a certificate from a public CA (or set "
                    "[sender] ca_file)",
                )
            raise
        ssl_object = smtp.get_transport_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else "TLS"
        return passed("tls", subject, f"STARTTLS: {version}, certificate verified for {host}")
    except (SMTPException, OSError) as exc:
        return failed(
            "tls",
            subject,
            f"no SMTP session with {host}:{port}: {exc or type(exc).__name__}",
            "is outbound port 25 blocked by your provider? ask them to open it, or "
            'send through a smart host ([sender] mode = "relay")',
        )
    finally:
        smtp.close()
