"""A small HTTPS server for MTA-STS policy hosts (``https://mta-sts.<domain>/...``) in tests.

One server on one loopback address serves any number of policy hosts: the answer is chosen
by the request's Host header and path from ``pages`` (a test may change it while running).
It counts requests per (host, path), so a test can tell a cached policy from a refetched one.
``http.server`` in a background thread, the listening socket wrapped in the given
``SSLContext`` (a trustme certificate for the ``mta-sts.*`` names).
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bulkmail.peers import Peer

__all__ = ["HttpsServer", "Page"]


@dataclass
class Page:
    """One answer: status, Content-Type and body."""

    body: str
    status: int = 200
    content_type: str = "text/plain"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    peer: HttpsServer

    def server_bind(self) -> None:  # no reverse lookup of the address (socket.getfqdn)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = self.socket.accept()
        sock.settimeout(5.0)
        return self.peer.context.wrap_socket(sock, server_side=True), address

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refuses our certificate is the point of some tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        peer = self.server.peer
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        with peer.lock:
            peer.requests[(host, self.path)] = peer.requests.get((host, self.path), 0) + 1
            page = peer.pages.get((host, self.path))
        if page is None:
            page = Page("not found\n", 404)
        data = page.body.encode("utf-8")
        self.send_response(page.status)
        self.send_header("Content-Type", page.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class HttpsServer(Peer):
    """Serves ``pages[(host, path)]`` over HTTPS on ``host:port`` (0: a free port)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.pages: dict[tuple[str, str], Page] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def policy(self, domain: str, text: str, **kwargs: object) -> None:
        """Serve ``text`` as the MTA-STS policy of ``domain``."""
        with self.lock:
            self.pages[(f"mta-sts.{domain}", "/.well-known/mta-sts.txt")] = Page(text, **kwargs)  # type: ignore[arg-type]

    def fetches(self, domain: str) -> int:
        with self.lock:
            return self.requests.get((f"mta-sts.{domain}", "/.well-known/mta-sts.txt"), 0)

    def start(self) -> HttpsServer:
        server = _Server((self.host, self.port), _Handler)
        server.peer = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"https-{self.host}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server, self._thread = None, None
