"""Fixtures shared by the whole test suite.

Every server a test talks to is a real one on loopback, started for that test and stopped
after it. Sections: test peers (DNS, TLS, SMTP) here; database fixtures go in their own
section below.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import dns.resolver
import pytest
import trustme

from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.peers.smtp import SmtpServer

# ---------------------------------------------------------------------------------------------
# Test peers: DNS, TLS certificates, SMTP servers (bulkmail.peers)
# ---------------------------------------------------------------------------------------------

#: Names a server certificate covers unless a test asks for others: loopback as a name and as
#: addresses (one SMTP server per MX host on 127.0.0.x), and the MX / smart-host names tests use.
TLS_NAMES = (
    "localhost",
    *(f"127.0.0.{n}" for n in range(1, 10)),
    *(f"mx{n}.example.test" for n in range(1, 4)),
    "smtp.example.test",
)


@pytest.fixture
def dns_zone() -> Zone:
    """An empty zone; add records before or while ``dns_server`` serves it."""
    return Zone()


@pytest.fixture
def dns_server(dns_zone: Zone) -> Iterator[DnsServer]:
    """An authoritative DNS server for ``dns_zone`` on 127.0.0.1, a free port, UDP and TCP."""
    with DnsServer(dns_zone) as server:
        yield server


@pytest.fixture
def dns_resolver(dns_server: DnsServer) -> dns.resolver.Resolver:
    """A dnspython resolver that asks ``dns_server`` only (no cache, short lifetime)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_server.host]
    resolver.port = dns_server.port
    resolver.lifetime = 2.0
    return resolver


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority; clients trust it through ``tls_client_context``."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_context(tls_ca: trustme.CA) -> Callable[..., ssl.SSLContext]:
    """Factory: ``tls_server_context(*names)`` is a server SSLContext with a certificate from
    ``tls_ca`` for ``names`` (default: ``TLS_NAMES``). Certificates are issued once per set."""
    issued: dict[tuple[str, ...], trustme.LeafCert] = {}

    def make(*names: str) -> ssl.SSLContext:
        key = names or TLS_NAMES
        if key not in issued:
            issued[key] = tls_ca.issue_cert(*key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        issued[key].configure_cert(context)
        return context

    return make


@pytest.fixture
def tls_client_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client SSLContext that trusts ``tls_ca`` (and nothing else)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    tls_ca.configure_trust(context)
    return context


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """Factory: ``smtp_server(host="127.0.0.1", port=0, **kwargs)`` starts a ``SmtpServer``
    (kwargs as in its constructor: script, starttls_context, auth, …); all stop at teardown."""
    servers: list[SmtpServer] = []

    def start(host: str = "127.0.0.1", port: int = 0, **kwargs: object) -> SmtpServer:
        server = SmtpServer(host, port, **kwargs)  # type: ignore[arg-type]
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------------------------
# Databases: SQLite and PostgreSQL (tests/dbfixtures.py)
# ---------------------------------------------------------------------------------------------

from tests.dbfixtures import db, db_url, pg_url  # noqa: E402, F401
