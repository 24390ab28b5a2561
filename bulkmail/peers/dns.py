"""An authoritative DNS server for tests: a mutable zone served over UDP and TCP on loopback.

MX routing, SPF, DKIM key lookups, DMARC, PTR and blocklist checks all need DNS answers that a
test chooses: NXDOMAIN, NODATA, SERVFAIL, no answer at all, a null MX, a TXT record split into
several strings. ``Zone`` holds those records (thread-safe, editable while the server runs) and
``DnsServer`` answers queries for them on one port, UDP and TCP, in a background thread. Point
dnspython at it with ``nameservers=["127.0.0.1"]`` and ``port=server.port``.

Answers follow RFC 1034/2308 as a client sees them: names compare case-insensitively; a name
with no records of any type, and no names below it, is NXDOMAIN; a name that exists (or has
names below it: an "empty non-terminal", RFC 8020) but lacks the asked type is NOERROR with an
empty answer (NODATA); a CNAME is followed inside the zone. A UDP answer larger than the
client's buffer (512 bytes, or its EDNS size) comes back truncated, so the client retries over
TCP. Parsing and packing are dnslib's; the socket loop is ours so that start and stop take
milliseconds (socketserver polls for shutdown every half second).
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import struct
import threading
from dataclasses import dataclass

from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    MX,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RD,
    RR,
    TXT,
    A,
    DNSError,
    DNSHeader,
    DNSRecord,
)

from bulkmail.peers import Peer

__all__ = ["DnsServer", "Zone"]

log = logging.getLogger(__name__)

RTYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS")
_MAX_CNAME_CHAIN = 8
_CLASSIC_UDP_SIZE = 512
_OUR_EDNS_SIZE = 1232


def _norm(name: str) -> str:
    """The key of a name: lowercase, without the trailing dot."""
    return name.strip().rstrip(".").lower()


def _txt_strings(value: str | list[str]) -> list[bytes]:
    """A TXT value as its character-strings: a str is cut into 255-byte pieces, a list is kept."""
    if isinstance(value, str):
        raw = value.encode()
        return [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    strings = [s.encode() for s in value]
    if any(len(s) > 255 for s in strings):
        raise ValueError("each string of a TXT record is at most 255 bytes")
    return strings


def _rdata(rtype: str, value: str | list[str]) -> RD:
    """Build dnslib record data from the zone-file-like text of ``Zone.add``."""
    if rtype == "TXT":
        return TXT(_txt_strings(value))
    if not isinstance(value, str):
        raise ValueError(f"a {rtype} value is one string")
    if rtype == "A":
        return A(str(ipaddress.IPv4Address(value.strip())))
    if rtype == "AAAA":
        return AAAA(str(ipaddress.IPv6Address(value.strip())))
    if rtype == "MX":
        preference, _, exchange = value.strip().partition(" ")
        if not preference.isdigit() or not exchange.strip():
            raise ValueError(f"MX value must be 'PREFERENCE HOST', got {value!r}")
        return MX(exchange.strip(), int(preference))
    target = value.strip()
    if not target:
        raise ValueError(f"empty {rtype} target")
    return {"PTR": PTR, "CNAME": CNAME, "NS": NS}[rtype](target)


@dataclass(frozen=True)
class _Record:
    rtype: str
    rdata: RD
    ttl: int


@dataclass(frozen=True)
class Answer:
    """What the zone says about one question: an RCODE name and the answer records."""

    rcode: str  # "NOERROR", "NXDOMAIN", "SERVFAIL"
    records: list[RR]


class Zone:
    """The records a ``DnsServer`` serves. Thread-safe; may be changed while the server runs."""

    def __init__(self, default_ttl: int = 300) -> None:
        self.default_ttl = default_ttl
        self._lock = threading.Lock()
        self._records: dict[str, list[_Record]] = {}
        self._servfail: set[str] = set()
        self._timeout: set[str] = set()

    def add(self, name: str, rtype: str, value: str | list[str], ttl: int | None = None) -> None:
        """Add one record. MX is ``"10 mx1.example.com."`` (null MX: ``"0 ."``); TXT is a str
        (cut into 255-byte strings if longer) or a list of strings forming one record."""
        rtype = rtype.upper()
        if rtype not in RTYPES:
            raise ValueError(f"unsupported record type {rtype!r}; use one of {RTYPES}")
        try:
            rdata = _rdata(rtype, value)
        except DNSError as err:
            raise ValueError(f"bad {rtype} value {value!r}: {err}") from None
        record = _Record(rtype, rdata, self.default_ttl if ttl is None else ttl)
        with self._lock:
            self._records.setdefault(_norm(name), []).append(record)

    def add_ptr(self, ip: str, name: str) -> None:
        """Add the reverse record (in-addr.arpa / ip6.arpa) mapping ``ip`` to ``name``."""
        self.add(ipaddress.ip_address(ip).reverse_pointer, "PTR", name)

    def servfail(self, name: str) -> None:
        """Answer every query for ``name`` (any type) with SERVFAIL."""
        with self._lock:
            self._servfail.add(_norm(name))

    def timeout(self, name: str) -> None:
        """Never answer queries for ``name``: the client times out."""
        with self._lock:
            self._timeout.add(_norm(name))

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove the records of ``name`` of one type, or everything about it (including
        ``servfail`` and ``timeout`` marks) when ``rtype`` is None."""
        key = _norm(name)
        with self._lock:
            if rtype is None:
                self._records.pop(key, None)
                self._servfail.discard(key)
                self._timeout.discard(key)
                return
            kept = [r for r in self._records.get(key, []) if r.rtype != rtype.upper()]
            if kept:
                self._records[key] = kept
            else:
                self._records.pop(key, None)

    def answer(self, qname: str, rtype: str) -> Answer | None:
        """The answer to a question, or None when the name is set to time out."""
        key, owner, rtype = _norm(qname), qname.rstrip(".") + ".", rtype.upper()
        answers: list[RR] = []
        with self._lock:
            for _ in range(_MAX_CNAME_CHAIN):
                if key in self._timeout:
                    return None
                if key in self._servfail:
                    return Answer("SERVFAIL", [])
                records = self._records.get(key)
                if not records:
                    exists = self._has_names_below(key)
                    return Answer("NOERROR" if exists else "NXDOMAIN", answers)
                matching = [r for r in records if rtype in ("ANY", r.rtype)]
                cname = [r for r in records if r.rtype == "CNAME"]
                if matching or not cname:
                    return Answer("NOERROR", answers + [_rr(owner, r) for r in matching])
                answers.append(_rr(owner, cname[0]))
                owner = str(cname[0].rdata.label)
                key = _norm(owner)
        return Answer("SERVFAIL", [])

    def _has_names_below(self, key: str) -> bool:
        suffix = "." + key
        return any(name.endswith(suffix) for name in self._records)


def _rr(owner: str, record: _Record) -> RR:
    return RR(owner, getattr(QTYPE, record.rtype), ttl=record.ttl, rdata=record.rdata)


def build_reply(zone: Zone, request: DNSRecord, max_size: int | None) -> DNSRecord | None:
    """The reply to a parsed request (None: stay silent). ``max_size`` limits a UDP reply."""
    question = request.q
    answer = zone.answer(str(question.qname), QTYPE[question.qtype])
    if answer is None:
        return None
    reply = request.reply()
    reply.header.ad = 0  # dnslib echoes the query's AD bit; we validate nothing (RFC 6840 5.8)
    reply.header.rcode = getattr(RCODE, answer.rcode)
    for rr in answer.records:
        reply.add_answer(rr)
    if any(ar.rtype == QTYPE.OPT for ar in request.ar):
        reply.add_ar(EDNS0(udp_len=_OUR_EDNS_SIZE))
    if max_size is not None and len(reply.pack()) > max_size:
        reply.rr = []
        reply.header.tc = 1
    return reply


def _udp_limit(request: DNSRecord) -> int:
    """How big a UDP reply the client accepts: its EDNS buffer size, else 512 bytes."""
    for ar in request.ar:
        if ar.rtype == QTYPE.OPT:
            return max(_CLASSIC_UDP_SIZE, min(ar.rclass, 65535))
    return _CLASSIC_UDP_SIZE


def _formerr(data: bytes) -> bytes | None:
    """A FORMERR reply echoing the query id, or None if not even the header is readable."""
    if len(data) < 2:
        return None
    (query_id,) = struct.unpack("!H", data[:2])
    return DNSRecord(DNSHeader(id=query_id, qr=1, rcode=RCODE.FORMERR)).pack()


def _bind(family: int, kind: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port (a free one when ``port`` is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        udp = _bind(family, socket.SOCK_DGRAM, host, port)
        try:
            tcp = _bind(family, socket.SOCK_STREAM, host, udp.getsockname()[1])
        except OSError:
            udp.close()
            if port:
                raise
            continue
        return udp, tcp
    raise OSError(f"no port free for both UDP and TCP on {host}")


class DnsServer(Peer):
    """Serves a ``Zone`` over UDP and TCP on one port in a background thread.

    Use as a context manager or call ``start()`` / ``stop()``. ``port=0`` picks a port free for
    both protocols; ``port`` holds the real one once started. ``queries`` logs every question
    received as ``(name, type)``, the name lowercase without the trailing dot.
    """

    def __init__(self, zone: Zone, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zone = zone
        self.host = host
        self.port = port
        self.queries: list[tuple[str, str]] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def start(self) -> DnsServer:
        if self._thread is not None:
            raise RuntimeError("DNS server already started")
        self._udp, self._tcp = _bind_pair(self.host, self.port)
        self.port = self._udp.getsockname()[1]
        self._udp.setblocking(False)
        self._tcp.listen(64)
        self._tcp.setblocking(False)
        self._wake = socket.socketpair()
        self._thread = threading.Thread(
            target=self._serve, name=f"dns-{self.host}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket; returns once the server thread has ended."""
        if self._thread is None or self._wake is None:
            return
        self._wake[1].send(b"x")
        self._thread.join(timeout=5)
        with self._conns_lock:
            for conn in self._conns:
                _shutdown(conn)
        for sock in (self._udp, self._tcp, *self._wake):
            if sock is not None:
                sock.close()
        self._thread = self._wake = self._udp = self._tcp = None

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, self._on_udp)
            selector.register(self._tcp, selectors.EVENT_READ, self._on_accept)
            selector.register(self._wake[0], selectors.EVENT_READ, None)
            while True:
                for key, _ in selector.select():
                    if key.data is None:
                        return
                    try:
                        key.data()
                    except Exception:  # one bad query must not stop the server
                        log.exception("DNS test server %s:%s", self.host, self.port)

    def _on_udp(self) -> None:
        assert self._udp is not None
        try:
            data, client = self._udp.recvfrom(65535)
        except OSError:
            return
        reply = self._handle(data, udp=True)
        if reply is not None:
            try:
                self._udp.sendto(reply, client)
            except OSError:
                pass

    def _on_accept(self) -> None:
        assert self._tcp is not None
        try:
            conn, _ = self._tcp.accept()
        except OSError:
            return
        conn.setblocking(True)
        with self._conns_lock:
            self._conns.add(conn)
        threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        """Answer length-prefixed queries on one TCP connection until the client closes it."""
        try:
            while True:
                header = _recv_exactly(conn, 2)
                data = _recv_exactly(conn, struct.unpack("!H", header)[0]) if header else b""
                if not data:
                    return
                try:
                    reply = self._handle(data, udp=False)
                except Exception:
                    log.exception("DNS test server %s:%s", self.host, self.port)
                    return
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            conn.close()

    def _handle(self, data: bytes, *, udp: bool) -> bytes | None:
        """The bytes to send back for one query message, or None to stay silent."""
        try:
            request = DNSRecord.parse(data)
        except Exception:  # dnslib raises DNSError, but also others on garbage
            return _formerr(data)
        if not request.questions or request.header.qr:
            return _formerr(data) if not request.header.qr else None
        question = request.q
        self.queries.append((_norm(str(question.qname)), QTYPE[question.qtype]))
        reply = build_reply(self.zone, request, _udp_limit(request) if udp else None)
        return None if reply is None else reply.pack()


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes, or return what arrived before the peer closed (maybe b"")."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = conn.recv(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    return data if len(data) == size else b""


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
