"""A private Postfix on loopback: a real MTA as the receiving MX of an end-to-end send.

``PostfixMx(ip, port).start()`` writes a Postfix instance into a fresh folder under /tmp
(Postfix's daemons run as the ``postfix`` user, who cannot enter pytest's 0700 folders):
its own main.cf and master.cf (Debian's master.cf with one ``smtpd`` listener on
``ip:port`` instead of port 25, no chroot), its own queue and data folders, and its log in a
file. Every recipient of ``domain`` is delivered by the ``virtual`` agent into one Maildir
(``static:`` maps), owned by ``nobody``: so what a test reads is what Postfix wrote after
its own smtpd, cleanup and queue manager handled the message. With ``cert`` it offers
STARTTLS with that certificate.

The master runs in the foreground (``postfix start-fg``) as a child of the test; ``stop()``
(also called if starting fails) runs ``postfix stop``, then terminates, then kills, and
removes the folder. Root is required (Postfix refuses ``-c`` for other users unless the
default main.cf lists the folder).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MAIL_UID = MAIL_GID = 65534  # nobody / nogroup on Debian

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{domain}
mydomain = {domain}
myorigin = $mydomain
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP Postfix (bulkmail test MX)
disable_dns_lookups = yes
smtp_host_lookup = native
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
message_size_limit = 10240000
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
smtpd_tls_security_level = {tls_level}
smtpd_tls_cert_file = {root}/server.pem
smtpd_tls_key_file = {root}/server.key
smtpd_tls_loglevel = 1
"""


def _master_cf(ip: str, port: int) -> str:
    """Debian's master.cf: ``smtp inet`` moved to ``ip:port``, nothing chrooted."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            lines.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"{ip}:{port}"
        elif fields[1] == "inet" or fields[1] == "pass":
            lines.append("#" + line)  # submission, smtps, postscreen...: not ours
            continue
        fields[4] = "n"  # chroot: the daemons would need /etc copied into the queue folder
        lines.append("  ".join(fields[:8]) + (" " + " ".join(fields[8:]) if fields[8:] else ""))
    return "\n".join(lines) + "\n"


class PostfixMx:
    """See the module docstring."""

    def __init__(self, ip: str, port: int, domain: str) -> None:
        self.ip = ip
        self.port = port
        self.domain = domain
        self.root = Path(tempfile.mkdtemp(prefix="bulkmail-postfix-"))
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def missing() -> str | None:
        """Why this machine cannot run one (None when it can)."""
        if shutil.which("postfix") is None or not Path("/etc/postfix/master.cf").exists():
            return "postfix is not installed (scripts/install-test-peers.sh)"
        if os.geteuid() != 0:
            return "a private Postfix instance needs root"
        return None

    def _postfix(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.root / "conf"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, cert_pem: bytes | None = None, key_pem: bytes | None = None) -> PostfixMx:
        try:
            self._configure(cert_pem, key_pem)
            with (self.root / "start.log").open("wb") as out:  # fatal config errors land here
                self.process = subprocess.Popen(
                    ["postfix", "-c", str(self.root / "conf"), "start-fg"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, cert_pem: bytes | None, key_pem: bytes | None) -> None:
        os.chmod(self.root, 0o755)
        conf = self.root / "conf"
        conf.mkdir()
        for name in ("queue", "data"):
            (self.root / name).mkdir()
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, MAIL_UID, MAIL_GID)
        (self.root / "data").chmod(0o700)
        os.chown(self.root / "data", *_postfix_ids())
        if cert_pem and key_pem:
            (self.root / "server.pem").write_bytes(cert_pem)
            (self.root / "server.key").write_bytes(key_pem)
            (self.root / "server.key").chmod(0o600)
        (conf / "main.cf").write_text(
            _MAIN_CF.format(
                root=self.root,
                ip=self.ip,
                domain=self.domain,
                uid=MAIL_UID,
                gid=MAIL_GID,
                tls_level="may" if cert_pem else "none",
            ),
            encoding="utf-8",
        )
        (conf / "master.cf").write_text(_master_cf(self.ip, self.port), encoding="utf-8")

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postfix exited ({self.process.returncode}): {self.log()}")
            try:
                with socket.create_connection((self.ip, self.port), timeout=1) as sock:
                    if sock.recv(200).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not answer on {self.ip}:{self.port}: {self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the master and its children; never raises; removes the instance's folder."""
        try:
            if self.process is not None and self.process.poll() is None:
                self._postfix("stop", timeout=20)
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.process.terminate()
                    try:
                        self.process.wait(5)
                    except subprocess.TimeoutExpired:
                        self.process.kill()
                        self.process.wait(5)
        except (OSError, subprocess.SubprocessError):
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        texts = []
        for name in ("start.log", "postfix.log"):
            path = self.root / name
            texts.append(path.read_text(errors="replace")[-4000:] if path.exists() else "")
        return "\n".join(texts).strip() or "(no log)"

    def delivered(self) -> list[bytes]:
        """The messages in the Maildir, oldest first (exact bytes as Postfix wrote them)."""
        new = self.root / "mail" / "inbox" / "new"
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime) if new.exists() else []
        return [p.read_bytes() for p in files]

    def wait_delivered(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """Wait until ``count`` messages are in the Maildir (Postfix queues, then delivers)."""
        deadline = time.monotonic() + timeout
        while len(found := self.delivered()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def queue_ids(self) -> list[str]:
        """Postfix queue ids of accepted messages, from its log."""
        return re.findall(r"postfix/smtpd\[\d+\]: ([0-9A-F]{6,}): client=", self.log())


def _postfix_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postfix")
    return entry.pw_uid, entry.pw_gid
