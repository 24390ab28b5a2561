"""``bulkmail serve`` under a slowloris attack: a real server process with a 1024 open-files
limit, 1,100 clients trickling request-head bytes, and real requests that must still be
answered while the slow clients are closed and the log stays small (bulkmail/web/guard.py)."""

from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest

from bulkmail.db.engine import Database, upgrade
from bulkmail.peers.smtp import free_port

SLOW_CLIENTS = 1100
SERVER_FILES = 1024  # the open-files limit of the server process: a login shell's default
HEADER_TIMEOUT = 3.0
LOOPS = ["asyncio"] + (["uvloop"] if find_spec("uvloop") else [])


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILES, SERVER_FILES))


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    """``bulkmail serve`` on a free port with the event loop of the test's parameter."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    db = Database(url)
    upgrade(db)
    db.dispose()
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[unsubscribe]\nurl = "https://news.example/u"\n',
        encoding="utf-8",
    )
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "BULKMAIL_SECRET": "slow-clients-secret-0123456789"}
    env.pop("BULKMAIL_DATABASE_URL", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulkmail", "--config", str(config), "serve"]
            + ["--port", str(port), "--loop", request.param]
            + ["--header-timeout", str(HEADER_TIMEOUT)],
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=_limit_files,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/u/probe", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "bulkmail serve did not start"
                time.sleep(0.05)
        yield port, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SlowClients:
    """Connections that send a request head one byte every half second, never finishing it."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.alive: list[socket.socket] = []
        self.closed = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def open(self) -> None:
        for _ in range(self.count):
            sock = socket.socket()
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(b"POST /u/")
            except OSError:  # refused or reset at once: closed, which is allowed
                sock.close()
                self.closed += 1
                continue
            self.alive.append(sock)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(0.5):
            with self.lock:
                still = []
                for sock in self.alive:
                    try:
                        sock.send(b"x")
                        still.append(sock)
                    except OSError:
                        sock.close()
                        self.closed += 1
                self.alive = still

    def open_count(self) -> int:
        with self.lock:
            return len(self.alive)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.alive:
            sock.close()


@pytest.fixture
def files_for_clients() -> Iterator[None]:
    """This process needs a descriptor per slow client: raise its soft limit if it must."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SLOW_CLIENTS + 512
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"the test needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("server", LOOPS, indirect=True)
def test_slow_clients_are_closed_and_real_requests_answered_with_a_small_log(
    server: tuple[int, Path], files_for_clients: None
) -> None:
    port, log_path = server
    slow = SlowClients(port, SLOW_CLIENTS)
    try:
        slow.open()
        answers = []
        for _ in range(3):  # a real one-click POST, while the slow clients hold on
            reply = httpx.post(
                f"http://127.0.0.1:{port}/u/not-a-token",
                data={"List-Unsubscribe": "One-Click"},
                timeout=20,
            )
            answers.append(reply.status_code)
            time.sleep(0.5)
        assert answers == [404, 404, 404]  # the app answered: an unknown token

        deadline = time.monotonic() + HEADER_TIMEOUT + 30
        while slow.open_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slow.open_count() == 0, f"{slow.open_count()} slow clients still connected"
        assert slow.closed == SLOW_CLIENTS
    finally:
        slow.close()

    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "Too many open files" not in log
    assert "Traceback" not in log
    assert len(log) < 10_000, log[:3000]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", LOOPS[:1], indirect=True)
def test_a_body_trickled_past_the_timeout_gets_408_and_the_connection_is_freed(
    server: tuple[int, Path],
) -> None:
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT + 30) as sock:
        sock.sendall(
            b"POST /u/not-a-token HTTP/1.1\r\nHost: x\r\nContent-Length: 2600\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\nList-"
        )
        started = time.monotonic()
        answer = b""
        while b"\r\n" not in answer:
            readable = select.select([sock], [], [], 0.5)[0]
            if readable:
                chunk = sock.recv(4096)
                assert chunk, "closed without an answer"
                answer += chunk
            elif time.monotonic() - started < HEADER_TIMEOUT + 30:
                sock.sendall(b"U")  # one more byte of the body, never all of it
            else:
                pytest.fail("no answer to a body that never completes")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
