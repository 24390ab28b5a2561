"""A private Dovecot (IMAP and POP3) on loopback: the bounce mailbox of the bounce tests.

Each test module that uses the ``dovecot`` fixture gets its own Dovecot master (Debian's
``dovecot-imapd`` and ``dovecot-pop3d``), started as root with a config file written into
the test's temporary folder: listeners on 127.0.0.1 on free ports for IMAP (STARTTLS),
IMAPS, POP3 (STLS) and POP3S, a trustme certificate, a static password for every user,
Maildir storage owned by ``nobody`` (Dovecot refuses uid 0 for mail), its own base and state
folders, and its log in a file. It takes well under a second to start; ``clear()`` empties
the mailbox between tests and the master is stopped at the end of the module.

Messages are delivered with IMAP APPEND, so Dovecot owns every file it later reads.
"""

from __future__ import annotations

import email
import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from bulkmail.peers.smtp import free_port

MAIL_UID = MAIL_GID = 65534  # nobody / nogroup on Debian
PASSWORD = "dovecot-test-password"
USER = "bounces"
LISTENERS = ("imap", "imaps", "pop3", "pop3s")

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = bulkmail-test-{port_imap}
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port_imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port_imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port_pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {port_pop3s}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
pop3_uidl_format = %08Xu%08Xv
"""


@dataclass
class Dovecot:
    root: Path
    ca_file: Path
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD
    ports: dict[str, int] = field(default_factory=dict)
    home: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self, ca: trustme.CA) -> Dovecot:
        if shutil.which("dovecot") is None:
            pytest.fail(
                "dovecot is not installed (Debian dovecot-imapd and dovecot-pop3d; "
                "run scripts/install-test-peers.sh)"
            )
        cert = ca.issue_cert("localhost", self.host)
        cert.cert_chain_pems[0].write_to_path(self.root / "server.pem")
        cert.private_key_pem.write_to_path(self.root / "server.key")
        self.home = Path(tempfile.mkdtemp(prefix="bulkmail-dovecot-"))
        os.chown(self.home, MAIL_UID, MAIL_GID)
        while len(set(self.ports.values())) < len(LISTENERS):
            self.ports = {name: free_port() for name in LISTENERS}
        config = self.root / "dovecot.conf"
        config.write_text(
            _CONFIG.format(
                root=self.root,
                home=self.home,
                password=self.password,
                uid=MAIL_UID,
                gid=MAIL_GID,
                **{f"port_{k}": v for k, v in self.ports.items()},
            ),
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for port in self.ports.values():
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"dovecot exited: {self.log()}")
                try:
                    socket.create_connection((self.host, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"dovecot did not listen on {port}: {self.log()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    # -- looking at and changing the mailbox --------------------------------------------------
    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def imap(self) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL(
            self.host, self.ports["imaps"], ssl_context=self.client_context(), timeout=10
        )
        conn.login(self.user, self.password)
        return conn

    def deliver(self, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        conn = self.imap()
        try:
            for data in messages:
                typ, detail = conn.append(
                    folder, None, None, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                )
                assert typ == "OK", detail
        finally:
            conn.logout()

    def folder(self, name: str = "INBOX") -> list[tuple[str, set[str]]]:
        """(Subject, flags) of every message in folder ``name`` ([] if it does not exist)."""
        conn = self.imap()
        try:
            typ, _ = conn.select(f'"{name}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    flags = set(imaplib.ParseFlags(item[0]) or ())
                    subject = email.message_from_bytes(item[1]).get("Subject", "")
                    out.append((str(subject), {f.decode() for f in flags}))
            return out
        finally:
            conn.logout()

    def subjects(self, name: str = "INBOX") -> list[str]:
        return sorted(subject for subject, _flags in self.folder(name))

    def clear(self) -> None:
        """Delete every message and every folder but INBOX."""
        conn = self.imap()
        try:
            typ, boxes = conn.list()
            names = [
                b.decode().rsplit(' "." ', 1)[-1].rsplit(' "/" ', 1)[-1].strip('"')
                for b in boxes
                if isinstance(b, bytes)
            ]
            for name in names:
                if name.upper() != "INBOX":
                    conn.delete(f'"{name}"')
            typ, count = conn.select("INBOX")
            if count and count[0] not in (b"0", None):
                conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                conn.expunge()
        finally:
            conn.logout()


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A running private Dovecot for this test module (see the module docstring)."""
    root = tmp_path_factory.mktemp("dovecot")
    ca = trustme.CA()
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    server = Dovecot(root, ca_file)
    try:
        yield server.start(ca)
    finally:
        server.stop()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Iterator[Dovecot]:
    """The module's Dovecot with an empty mailbox for this test."""
    dovecot.clear()
    yield dovecot
