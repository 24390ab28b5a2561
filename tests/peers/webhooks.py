"""A webhook receiver on loopback: a real HTTP server that checks every signature itself.

It verifies ``Bulkmail-Signature`` the way the README tells a receiver to (HMAC-SHA256 of
"<t>.<raw body>", constant-time compare, a 5-minute window), independently of
``bulkmail.webhooks.signature``, and remembers what it got. A test chooses its behaviour in
one line: ``Receiver(secret, fail_first=3)`` answers 500 to the first three POSTs,
``Receiver(secret, delay=5)`` hangs for 5 s before each answer;
``receiver.start()`` may come late (the port is reserved meanwhile: connections refused).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bulkmail.peers.smtp import free_port


def check_signature(secret: bytes, body: bytes, header: str, now: float) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or abs(now - int(t)) > 300:
        return False
    expected = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


@dataclass
class Receiver:
    secret: bytes
    fail_first: int = 0  # answer 500 to this many POSTs first
    delay: float = 0.0  # seconds to wait before answering (a hanging receiver)
    host: str = "127.0.0.1"
    port: int = field(default_factory=lambda: free_port(("127.0.0.1",)))
    events: list[dict[str, Any]] = field(default_factory=list)  # verified, in arrival order
    rejected: int = 0  # POSTs whose signature did not verify
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/bulkmail"

    def ids(self) -> set[str]:
        with self.lock:
            return {e["id"] for e in self.events}

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.posts += 1
                    failing = receiver.posts <= receiver.fail_first
                    header = self.headers.get("Bulkmail-Signature", "")
                    ok = check_signature(receiver.secret, body, header, time.time())
                    if not ok:
                        receiver.rejected += 1
                    elif not failing:
                        event = json.loads(body)
                        if isinstance(event, list):  # [webhooks] events_per_post > 1
                            receiver.events.extend(event)
                        else:
                            assert event["id"] == self.headers["Bulkmail-Event-Id"]
                            receiver.events.append(event)
                status = 400 if not ok else 500 if failing else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
